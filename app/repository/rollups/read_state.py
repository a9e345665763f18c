"""What `approximate` (read.py) reads before any cell, in one statement: the
rollups' state, the extremes of the stored cells and calls; and the days
holding cells in months not sealed."""
from peewee import fn

from ... import local_days
from ...db import database
from ...models import LlmCall, UsageRollup, UsageRollupState
from ...rollups import END_OF_TIME, following
from ..retention import pruned_columns, pruned_of
from .rebuild import sealed_before_of_stored


def state_and_months():
    """(needs rebuild, the first month without month cells (END_OF_TIME
    while none was sealed), the first and last month holding cells, or
    None, the retention.Pruned, the ready zones' {name: whole from} that
    ROLLUP_ZONES names, (first day, end of the last day) holding day cells
    when it names any, else None, and the latest call's timestamp or None):
    one statement, each extreme one index descent. Cells an older version
    wrote past END_OF_TIME are never read: counting them, one call dated
    9999-12-31 made every answer of all history list 95,000 months."""
    def cell(pick, grain):
        return (UsageRollup.select(pick(UsageRollup.cell_start))
                .where((UsageRollup.grain == grain) & (UsageRollup.cell_start < END_OF_TIME)))
    # The first and last day cells only where zones' cells may be read (window_covers.in_zone).
    days = [cell(fn.MIN, "day"), cell(fn.MAX, "day")] if local_days.named() else []
    row = (UsageRollupState
           .select(UsageRollupState.needs_rebuild, UsageRollupState.sealed_before, UsageRollupState.zone_cells,
                   LlmCall.select(fn.MAX(LlmCall.timestamp)), cell(fn.MIN, "month"), cell(fn.MAX, "month"),
                   *pruned_columns(), *days)
           .tuples()
           .get())
    needs_rebuild, sealed_before, zone_cells, latest, *starts, horizon, pruned_from = row[:8]
    first, last, *days = (None if value is None else UsageRollup.cell_start.python_value(value)
                          for value in starts + list(row[8:]))
    stored_days = (days[0], following(days[1], "day")) if days and days[0] is not None else None
    return (bool(needs_rebuild), sealed_before_of_stored(sealed_before), first, last,
            pruned_of(horizon, pruned_from), local_days.readable(local_days.ready_of(zone_cells)), stored_days,
            None if latest is None else LlmCall.timestamp.python_value(latest))


def days_from(start):
    """The starts of the days holding cells from `start` to END_OF_TIME: a
    loose index scan, one descent of usage_rollup's unique index per day
    found (a DISTINCT read every cell of the month)."""
    after = "SELECT MIN(cell_start) FROM usage_rollup WHERE grain = 'day' AND cell_start {} AND cell_start < {}"
    param = database.param
    sql = (f"WITH RECURSIVE day_found(start) AS ({after.format('>= ' + param, param)} UNION ALL "
           f"SELECT ({after.format('> day_found.start', param)}) FROM day_found WHERE start IS NOT NULL) "
           "SELECT start FROM day_found WHERE start IS NOT NULL")
    end = UsageRollup.cell_start.db_value(END_OF_TIME)
    rows = database.execute_sql(sql, [UsageRollup.cell_start.db_value(start), end, end]).fetchall()
    return [UsageRollup.cell_start.python_value(value) for (value,) in rows]
