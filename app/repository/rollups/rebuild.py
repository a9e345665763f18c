"""Recomputing cells from llm_call: `rollups rebuild` and `rollups verify`.

Before the retention horizon (app/retention.py) the calls were pruned and
the cells are all that remains: no day cell there is recomputed or
replaced, and they stand for their calls in the cells of their month
(`recomputed`). So `verify` compares cells with calls from the horizon on,
and before it checks that month cells hold exactly their day cells.
"""
import functools

from peewee import PostgresqlDatabase, Select

from ... import day_tails, local_days, quarters
from ...buckets import zone
from ...cell_builder import CellBuilder, CellNumbers, CellTable, merged
from ...db import database
from ...models import LlmCall, UsageRollup, UsageRollupState
from ...rollups import (BEGINNING, CELL_GRAINS, DAY_GRAINS, END_OF_TIME, FAILED_DAY, METRICS, MODEL_DAY,
                        MONTH_GRAINS, QUARTERS_AT, TAILS_AT, TENANT_DAY, TENANT_MONTH, following)
from ...rollups import floor as rollup_floor
from ..retention import held_horizon, pruned
from . import zone_days
from .cells import insert_cells, lock_cells
from .sources import calls_between, stored_cells

# The cells of days before the retention horizon, kept when their calls are
# pruned: the model_day ones go with their calls (model_days.py).
PRUNED_DAY_GRAINS = ("day", TENANT_DAY, FAILED_DAY)


def mark_rebuilt():
    """Every month is rebuilt: cells hold every call, and the zones
    ROLLUP_ZONES names have theirs (`zone_days`: the cells of the others go)."""
    UsageRollupState.update(needs_rebuild=False).execute()
    zone_days.forget_unnamed()
    zone_days.mark_ready(pruned().horizon)


def months_to_rebuild():
    """The UTC months holding calls or cells, oldest first (as their first
    instants), before END_OF_TIME.

    A loose index scan: one statement per month found, each the first call
    and the first cell of every grain at or after the month following the
    last one found (an index descent each: llm_call_time_stats and
    usage_rollup's unique key). Listing every month between the first and
    the last instant instead walked 120,000 empty months for two calls dated
    0001-01-01 and 9999-11-30.
    """
    months, after = [], BEGINNING
    while after < END_OF_TIME:
        firsts = [LlmCall.timestamp.python_value(moment) for moment
                  in database.execute(_firsts_at_or_after(after)).fetchone() if moment is not None]
        if not firsts:
            break
        months.append(rollup_floor(min(firsts), "month"))
        after = following(months[-1], "month")
    return months


def _firsts_at_or_after(moment):
    """SELECT the first call's timestamp and each grain's first cell start
    in [moment, END_OF_TIME), NULL where there is none: ORDER BY ... LIMIT 1,
    one index descent each on both engines."""
    def first(column, *where):
        in_domain = (column >= moment) & (column < END_OF_TIME)
        return column.model.select(column).where(in_domain, *where).order_by(column).limit(1)
    firsts = [first(LlmCall.timestamp)]
    firsts += [first(UsageRollup.cell_start, UsageRollup.grain == grain) for grain in CELL_GRAINS]
    return Select(columns=firsts).bind(database)


def calls_past_end_of_time():
    """How many calls lie at or after END_OF_TIME, where no cell holds them:
    only an older version, which accepted any timestamp, could store them."""
    return LlmCall.select().where(LlmCall.timestamp >= END_OF_TIME).count()


def sealed_before():
    """The first month without month cells (app/repository/rollups/seal.py)."""
    return sealed_before_of_stored(UsageRollupState.select(UsageRollupState.sealed_before).scalar())


def sealed_before_of_stored(value):
    """usage_rollup_state.sealed_before as read (aware, or None): END_OF_TIME
    while no month was sealed (NULL: every month has its month cells, as
    before migration 015)."""
    return END_OF_TIME if value is None else value


def recomputed(month, horizon=None, sealed=True, zones=None):
    """The cells of `month` recomputed from llm_call, a UTC day at a time.

    Yields (grains, start, end, {key: (CellNumbers, sketches)}): the cells of
    each day (DAY_GRAINS), then the month's cells (MONTH_GRAINS; a month not
    `sealed` has none), then per zone of `zones` ({name: whole from}, default
    those ROLLUP_ZONES names) the day cells the month owns
    (zone_days.OwnedCells). Memory:
    one day's calls and the month's cells. The days before `horizon` (a UTC
    midnight: the retention horizon) are not yielded: their stored day cells
    are added to the month's cells instead of their pruned calls.
    """
    month_cells, month_sketches = {}, {}
    day, month_end = month, following(month, "month")
    if horizon is not None and horizon > month:
        day = min(horizon, month_end)
        if sealed:
            month_cells, month_sketches = months_of_stored_days(month, day)
    zone_cells = zone_days.OwnedCells(month, horizon, {name: None for name in local_days.named()}
                                      if zones is None else zones)
    first_day = day
    while day < month_end:
        next_day = following(day, "day")
        builder = CellBuilder(DAY_GRAINS + zone_cells.grains)
        month_builder = CellBuilder(MONTH_GRAINS if sealed else ())
        for row in calls_between(day, next_day):
            builder.add(row)
            month_builder.add(row)
        cells, sketches = builder.cells(), builder.sketches()
        yield DAY_GRAINS, day, next_day, {key: (cell, sketches[key]) for key, cell in cells.items()
                                          if key[0] in DAY_GRAINS}
        zone_cells.add(cells, sketches)
        for key, cell in month_builder.cells().items():
            month_cells.setdefault(key, CellNumbers()).add(cell.calls, cell.cost, cell.sums, cell.mins, cell.maxs)
        month_sketches = merged(month_sketches, month_builder.sketches())
        day = next_day
    yield MONTH_GRAINS, month, month_end, {key: (cell, month_sketches[key]) for key, cell in month_cells.items()}
    for lo, hi in zone_cells.edges(first_day, month_end):
        builder = CellBuilder(zone_cells.grains)
        for row in calls_between(lo, hi):
            builder.add(row)
        zone_cells.add(builder.cells(), builder.sketches())
    yield from zone_cells.results()


def months_of_stored_days(start, end):
    """({key: CellNumbers}, {key: sketches}) of the month and tenant_month
    cells that the stored day cells in [start, end), days of one month, add up to."""
    cells, parts = {}, []
    for (_, day, tenant, operation, model, status, error_class), (numbers, sketches) in stored_cells(
            ("day",), start, end).items():  # tenant_month from day cells: before the horizon, as pruning left them
        month = rollup_floor(day, "month")
        day_cell = CellNumbers.of(*numbers)
        for key in (("month", month, tenant, operation, model, status, error_class),
                    (TENANT_MONTH, month, tenant, "", "", status, "")):
            cells.setdefault(key, CellNumbers()).add(day_cell.calls, day_cell.cost, day_cell.sums, day_cell.mins,
                                                    day_cell.maxs)
            parts.append({key: sketches[:len(METRICS)]})  # not their tails: a month has none
    return cells, merged(*parts)


def rebuild_month(month):
    """Replace the cells of `month` by cells recomputed from llm_call, in one
    transaction that keeps ingestion from changing them meanwhile (its
    writes wait), and prunes from recording a later horizon. Day cells
    and tenant_day cells before the retention horizon are kept (`recomputed`),
    and so are the zones' cells (app/local_days.py), whose local days the
    month owns are recomputed too (`zone_days`). Returns the number of cells
    written."""
    with database.atomic():
        lock_cells()
        horizon = held_horizon()
        replaced = ((UsageRollup.cell_start >= month) & (UsageRollup.cell_start < following(month, "month"))
                    & ~UsageRollup.grain.startswith(local_days.PREFIX))  # zone_days: the days it owns
        if horizon is not None:
            replaced &= UsageRollup.grain.not_in(PRUNED_DAY_GRAINS) | (UsageRollup.cell_start >= horizon)
        UsageRollup.delete().where(replaced).execute()
        zone_days.delete_owned(month, horizon)
        written = 0
        for *_, cells in recomputed(month, horizon, month < sealed_before()):
            insert_cells(CellTable.of({key: cell for key, (cell, _) in cells.items()},
                                      {key: sketches for key, (_, sketches) in cells.items()}))
            written += len(cells)
    return written


def _same_sketches(key, recomputed, stored, tail_starts):
    """Whether a cell's stored sketches (merged) are those recomputed: a
    model_day cell's tails only where they are whole (app/quarters.py), a
    day cell's tails only those that reads take, from the quarters
    `tail_starts(day)` gives (`_read_tail_starts`: app/day_tails.py)."""
    if key[0] == MODEL_DAY:
        return recomputed[:-1] == stored[:-1] and quarters.whole_tails_agree(stored[QUARTERS_AT:],
                                                                             recomputed[QUARTERS_AT:])
    if key[0] not in day_tails.TAILED:
        return recomputed == stored
    return (recomputed[:TAILS_AT] + recomputed[QUARTERS_AT:] == stored[:TAILS_AT] + stored[QUARTERS_AT:]
            and day_tails.same_tails(recomputed[TAILS_AT], stored[TAILS_AT], tail_starts(key[1])))


def _read_tail_starts(zones):
    """A function of a UTC day: the quarters at which reads take its day
    cells' tails, those of `zones` ({name: whole from}, the readable ones)
    whole on that day; computed once per day, not once per cell (a day
    holds hundreds of day cells)."""
    zones = [(zone(name), whole_from) for name, whole_from in zones.items()]

    @functools.cache
    def tail_starts(day):
        return quarters.tail_starts(day, [tz for tz, whole_from in zones if whole_from is None or day >= whole_from])
    return tail_starts


def differences(month):
    """[(key, reason)] where the stored cells of `month` differ from cells
    recomputed from llm_call (before the retention horizon: from its day
    cells), all read in one snapshot. A month not sealed has no month cells."""
    found = []
    snapshot = {"isolation_level": "REPEATABLE READ"} if isinstance(database.obj, PostgresqlDatabase) else {}
    with database.atomic(**snapshot):
        sealed = month < sealed_before()
        # The zones read, from where their cells are whole (app/local_days.py).
        zones = local_days.readable(zone_days.ready())
        tail_starts = _read_tail_starts(zones)
        for grains, start, end, cells in recomputed(month, pruned().horizon, sealed, zones):
            stored = stored_cells(grains, start, end)
            for key in sorted(set(cells) | set(stored)):
                if key not in stored:
                    found.append((key, "missing"))
                elif key not in cells:
                    found.append((key, "has no calls" if sealed or key[0] not in MONTH_GRAINS else
                                  "a month cell of a month not sealed"))
                else:
                    cell, sketches = cells[key]
                    if cell.numbers() != stored[key][0]:
                        found.append((key, f"numbers {stored[key][0]} != {cell.numbers()}"))
                    elif not _same_sketches(key, list(sketches), stored[key][1], tail_starts):
                        found.append((key, "sketches differ"))
    return found
