"""Reading what cells are made of: calls from llm_call, and stored cells as a rebuild writes them."""
from ...cell_builder import merged
from ...models import LlmCall, UsageRollup
from .cells import KEY_COLUMNS, NUMBERS, SKETCHES

CALL_FIELDS = {"tenant": LlmCall.tenant, "operation": LlmCall.operation, "model": LlmCall.model,
               "status": LlmCall.status, "error_class": LlmCall.error_class,
               "timestamp": LlmCall.timestamp, "cost_micro_usd": LlmCall.cost_micro_usd,
               "call_duration_ms": LlmCall.call_duration_ms, "input_tokens": LlmCall.input_tokens,
               "output_tokens": LlmCall.output_tokens}


def calls_between(start, end, model=None):
    """llm_call rows (dicts of the fields cells need) with start <= timestamp
    < end, of `model` only if given."""
    where = (LlmCall.timestamp >= start) & (LlmCall.timestamp < end)
    if model is not None:
        where &= LlmCall.model == model
    query = (LlmCall
             .select(*CALL_FIELDS.values())
             .where(where)
             .tuples())
    names = list(CALL_FIELDS)
    return (dict(zip(names, row)) for row in query.iterator())


def stored_cells(grains, start, end):
    """{key: (numbers, sketches)} of the stored cells of `grains` starting in
    [start, end), their sketches merged into one piece each (as rebuilt)."""
    columns = [getattr(UsageRollup, name) for name in KEY_COLUMNS + NUMBERS + SKETCHES]
    query = (UsageRollup
             .select(*columns)
             .where(UsageRollup.grain.in_(grains) & (UsageRollup.cell_start >= start)
                    & (UsageRollup.cell_start < end))
             .tuples())
    width, count = len(KEY_COLUMNS), len(NUMBERS)
    rows = {tuple(row[:width]): row[width:] for row in query.iterator()}
    sketches = merged({key: [bytes(s) for s in row[count:]] for key, row in rows.items()})
    return {key: (list(row[:count]), sketches[key]) for key, row in rows.items()}
