"""SQL for usage_rollup: keeping cells with the calls, and reading windows from them.

What a cell is and how a window is covered: `app/rollups.py`.
"""
from peewee import CTE, JOIN, SQL, Case, PostgresqlDatabase, Select, fn

from .. import statistics
from ..db import database, execute_many, fetch_all
from ..models import LlmCall, UsageRollup, UsageRollupState
from ..rollups import GRAINS, KEY, METRICS, Cell, CellBuilder, cover, following, merged
from ..rollups import floor as rollup_floor
from ..sketch import SketchSet
from . import scans
from .scans import Scan, values_list

NUMBERS = ["calls", "cost_micro_usd"] + [f"{m}_{s}" for m in METRICS for s in ("sum", "min", "max")]
SKETCHES = [f"{m}_sketch" for m in METRICS]
KEY_COLUMNS = ["grain", "cell_start", *KEY]


# --- keeping cells with the calls -------------------------------------------------------

def add(created_rows):
    """Add calls just inserted (dicts of LlmCall fields) to their cells, inside
    the caller's transaction, so the cells change if and only if the calls are
    stored.

    Three statements on PostgreSQL whatever the number of cells (one short
    statement per cell on SQLite, in-process): insert the cells missing, as
    empty ones; read and lock every cell; write the sums computed here.
    Concurrent batches touching the same cells wait for each other (see
    `_stored_or_empty`), so none of their additions is lost. (SQLite has
    one writer at a time.)
    """
    builder = CellBuilder()
    for row in created_rows:
        builder.add(row)
    cells = builder.cells()
    if not cells:
        return
    keys = sorted(cells)
    stored = _stored_or_empty(keys, cells)
    fresh = builder.sketches()
    sketches = merged(fresh, {key: row[len(NUMBERS) + 1:] for key, row in stored.items()})
    updates = []
    for key in keys:
        row_id, *numbers = stored[key][:len(NUMBERS) + 1]
        cell = cells[key]
        cell.add(numbers[0], numbers[1], numbers[2::3], numbers[3::3], numbers[4::3])
        updates.append([*_numbers(cell), *sketches[key], row_id])
    _update(updates)


def _stored_or_empty(keys, cells):
    """{key: (id, numbers..., sketches...)} of each cell as stored, locked
    until COMMIT; an empty cell (no calls, the minima and maxima of the
    cell's new calls) is inserted first where there was none.

    Locks are taken in one order (the keys', then the index's), so
    concurrent batches wait for each other instead of deadlocking: the
    INSERT waits only for cells another batch is inserting, and that batch
    holds no lock a later key of ours needs."""
    rows = []
    for key in keys:
        cell = cells[key]
        empty = [0, 0]
        for i in range(len(METRICS)):
            empty += [0, cell.mins[i], cell.maxs[i]]
        rows.append(_key_params(key) + empty + [b""] * len(SKETCHES))
    _insert_rows(rows, f" ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO NOTHING")
    columns = ", ".join(KEY_COLUMNS + ["id"] + NUMBERS + SKETCHES)
    width = len(KEY_COLUMNS)
    if isinstance(database.obj, PostgresqlDatabase):
        arrays = ", ".join(f"%b::{TYPES[name]}[]" for name in KEY_COLUMNS)
        found = database.execute_sql(
            f"SELECT {columns} FROM usage_rollup WHERE ({', '.join(KEY_COLUMNS)}) IN"
            f" (SELECT * FROM unnest({arrays})) ORDER BY {', '.join(KEY_COLUMNS)} FOR UPDATE",
            [list(column) for column in zip(*(row[:width] for row in rows))]).fetchall()
    else:
        condition = " AND ".join(f"{name} = ?" for name in KEY_COLUMNS)
        found = execute_many(f"SELECT {columns} FROM usage_rollup WHERE {condition}",
                             [row[:width] for row in rows], returning=True)
    return {_key_of(row[:width]): tuple(row[width:]) for row in found}


# Column types, for PostgreSQL's unnest of one array per column.
TYPES = {"grain": "text", "cell_start": "timestamp", "id": "bigint",
         **{name: "text" for name in KEY}, **{name: "bigint" for name in NUMBERS},
         **{name: "bytea" for name in SKETCHES}}
COLUMNS = KEY_COLUMNS + NUMBERS + SKETCHES


def _insert_rows(rows, suffix=""):
    """INSERT rows (values of COLUMNS) + `suffix`, in the order given.

    PostgreSQL: one statement reading one array per column (unnest), which
    keeps the rows' order; thousands of single-row statements, even
    pipelined, took 4 times as long. SQLite, in-process: one short statement per row."""
    if not rows:
        return
    if isinstance(database.obj, PostgresqlDatabase):
        arrays = ", ".join(f"%b::{TYPES[name]}[]" for name in COLUMNS)
        sql = f"INSERT INTO usage_rollup ({', '.join(COLUMNS)}) SELECT * FROM unnest({arrays}){suffix}"
        database.execute_sql(sql, [list(column) for column in zip(*rows)])
        return
    sql = f"INSERT INTO usage_rollup ({', '.join(COLUMNS)}) VALUES ({', '.join([database.param] * len(COLUMNS))}){suffix}"
    execute_many(sql, rows)


def _update(rows):
    """Write (numbers..., sketches..., id) rows over the cells they name."""
    if not rows:
        return
    columns = NUMBERS + SKETCHES
    if isinstance(database.obj, PostgresqlDatabase):
        arrays = ", ".join(f"%b::{TYPES[name]}[]" for name in columns + ["id"])
        assignments = ", ".join(f"{name} = v.{name}" for name in columns)
        database.execute_sql(f"UPDATE usage_rollup AS r SET {assignments} FROM unnest({arrays})"
                             f" AS v({', '.join(columns + ['id'])}) WHERE r.id = v.id",
                             [list(column) for column in zip(*rows)])
    else:
        assignments = ", ".join(f"{name} = ?" for name in columns)
        execute_many(f"UPDATE usage_rollup SET {assignments} WHERE id = ?", rows)


def _numbers(cell):
    """A Cell's values for the NUMBERS columns."""
    numbers = [cell.calls, cell.cost]
    for i in range(len(METRICS)):
        numbers += [cell.sums[i], cell.mins[i], cell.maxs[i]]
    return numbers


def _key_params(key):
    grain, start, *rest = key
    return [grain, UsageRollup.cell_start.db_value(start), *rest]


def _insert(keys, cells, sketches):
    """Insert cells (`rebuild_month` deleted the month's first)."""
    _insert_rows([_key_params(key) + _numbers(cells[key]) + sketches[key] for key in keys])


def _key_of(row):
    grain, start, *rest = row
    return (grain, UsageRollup.cell_start.python_value(start), *rest)


class RollupsNotBuilt(Exception):
    """Calls were stored before the rollups existed, and no rebuild has run since."""

    def __str__(self):
        return ("percentiles=approximate needs the rollups, which are not built yet: run "
                "`flask --app wsgi rollups rebuild`. percentiles=exact works meanwhile.")


def mark_rebuilt():
    """Every month is rebuilt: cells hold every call."""
    UsageRollupState.update(needs_rebuild=False).execute()


# --- recomputing cells from llm_call ---------------------------------------------------------

def months_to_rebuild():
    """The UTC months holding calls or cells, oldest first (as their first instants)."""
    ends = [LlmCall.timestamp.python_value(moment)
            for model, column in ((LlmCall, LlmCall.timestamp), (UsageRollup, UsageRollup.cell_start))
            for moment in model.select(fn.MIN(column), fn.MAX(column)).scalar(as_tuple=True)
            if moment is not None]
    if not ends:
        return []
    months, month, last = [], rollup_floor(min(ends), "month"), max(ends)
    while month <= last:
        months.append(month)
        month = following(month, "month")
    return months


def recomputed(month):
    """The cells of `month` recomputed from llm_call, a UTC day at a time.

    Yields (grains, start, end, {key: (Cell, sketches)}): the hours and the
    day of each day, then the month. Memory: one day's calls and the month's
    cells.
    """
    month_cells, month_sketches = {}, {}
    day, month_end = month, following(month, "month")
    while day < month_end:
        next_day = following(day, "day")
        builder, month_builder = CellBuilder(("hour", "day")), CellBuilder(("month",))
        for row in _calls_between(day, next_day):
            builder.add(row)
            month_builder.add(row)
        sketches = builder.sketches()
        yield ("hour", "day"), day, next_day, {key: (cell, sketches[key]) for key, cell in builder.cells().items()}
        for key, cell in month_builder.cells().items():
            month_cells.setdefault(key, Cell()).add(cell.calls, cell.cost, cell.sums, cell.mins, cell.maxs)
        month_sketches = merged(month_sketches, month_builder.sketches())
        day = next_day
    yield ("month",), month, month_end, {key: (cell, month_sketches[key]) for key, cell in month_cells.items()}


CALL_FIELDS = {"tenant": LlmCall.tenant, "operation": LlmCall.operation, "model": LlmCall.model,
               "status": LlmCall.status, "error_class": LlmCall.error_class,
               "timestamp": LlmCall.timestamp, "cost_micro_usd": LlmCall.cost_micro_usd,
               "call_duration_ms": LlmCall.call_duration_ms, "input_tokens": LlmCall.input_tokens,
               "output_tokens": LlmCall.output_tokens}


def _calls_between(start, end):
    """llm_call rows (dicts of the fields cells need) with start <= timestamp < end."""
    query = (LlmCall
             .select(*CALL_FIELDS.values())
             .where((LlmCall.timestamp >= start) & (LlmCall.timestamp < end))
             .tuples())
    names = list(CALL_FIELDS)
    return (dict(zip(names, row)) for row in query.iterator())


def rebuild_month(month):
    """Replace the cells of `month` by cells recomputed from llm_call, in one
    transaction that keeps ingestion from changing them meanwhile (its
    writes wait). Returns the number of cells written."""
    with database.atomic():
        _lock_cells()
        (UsageRollup
         .delete()
         .where((UsageRollup.cell_start >= month) & (UsageRollup.cell_start < following(month, "month")))
         .execute())
        written = 0
        for _, _, _, cells in recomputed(month):
            keys = sorted(cells)
            _insert(keys, {key: cells[key][0] for key in keys}, {key: cells[key][1] for key in keys})
            written += len(keys)
    return written


def _lock_cells():
    """Keep writers of usage_rollup waiting until COMMIT; readers go on.

    PostgreSQL: SHARE ROW EXCLUSIVE conflicts with the ROW EXCLUSIVE lock
    every INSERT and UPDATE takes. SQLite: take the write lock now, with an
    empty write, so that the month's calls are read under it."""
    if isinstance(database.obj, PostgresqlDatabase):
        database.execute_sql("LOCK TABLE usage_rollup IN SHARE ROW EXCLUSIVE MODE")
    else:
        database.execute_sql("DELETE FROM usage_rollup WHERE 0 = 1")


def differences(month):
    """[(key, reason)] where the stored cells of `month` differ from cells
    recomputed from llm_call, both read in one snapshot."""
    found = []
    snapshot = {"isolation_level": "REPEATABLE READ"} if isinstance(database.obj, PostgresqlDatabase) else {}
    with database.atomic(**snapshot):
        for grains, start, end, cells in recomputed(month):
            stored = _stored(grains, start, end)
            for key in sorted(set(cells) | set(stored)):
                if key not in stored:
                    found.append((key, "missing"))
                elif key not in cells:
                    found.append((key, "has no calls"))
                else:
                    cell, sketches = cells[key]
                    if _numbers(cell) != stored[key][0]:
                        found.append((key, f"numbers {stored[key][0]} != {_numbers(cell)}"))
                    elif list(sketches) != stored[key][1]:
                        found.append((key, "sketches differ"))
    return found


def _stored(grains, start, end):
    """{key: (numbers, sketches)} of the stored cells of `grains` starting in [start, end)."""
    columns = [getattr(UsageRollup, name) for name in KEY_COLUMNS + NUMBERS + SKETCHES]
    query = (UsageRollup
             .select(*columns)
             .where(UsageRollup.grain.in_(grains) & (UsageRollup.cell_start >= start)
                    & (UsageRollup.cell_start < end))
             .tuples())
    width, count = len(KEY_COLUMNS), len(NUMBERS)
    return {tuple(row[:width]): (list(row[width:width + count]), [bytes(s) for s in row[width + count:]])
            for row in query.iterator()}


# --- reading windows ------------------------------------------------------------------------

def approximate(filters, key_names, windows, levels):
    """Statistics of each window from cells, and raw rows for the edges.

    `filters` {column name: [values]}; `key_names` the group key (column
    names); `windows` [(start, end)], open ends None. Returns ({(window index,
    *key): Cell}, [{level key: {metric: {pct: value}}} for each of
    `levels`]), a level being a function from (window index, *key) to the
    key its percentiles are merged by (sketches merge; exact percentiles do
    not). Every number but the percentiles is exact. At most nine
    statements: the rollups' state, then the totals and the sketches of the
    cells of each grain, and the totals and values of the raw edges.
    """
    needs_rebuild, first_month, last_month = _state_and_months()
    if needs_rebuild:
        raise RollupsNotBuilt()
    covers = [cover(start, end) for start, end in windows]
    cell_ranges = [(i, grain, max(lo, first_month) if grain == "month" else lo,
                    min(hi, following(last_month, "month")) if grain == "month" else hi)
                   for i, c in enumerate(covers) for grain, lo, hi in c.cells
                   if grain != "month" or first_month is not None]
    raw_ranges = [(i, lo, hi) for i, c in enumerate(covers) for lo, hi in c.raw]
    cells, sketches, groups = {}, SketchSet(), [{} for _ in levels]

    def add_to_sketches(keys, columns, add):
        """Each key's row to the sketch group of its level key, in every level."""
        for level, level_groups in zip(levels, groups):
            numbers = [_group_number(groups, level_groups, level(key)) for key in keys]
            for m, column in enumerate(columns):
                add([number * len(METRICS) + m for number in numbers], column)

    for grain in GRAINS:  # one grain at a time: see _CellSource
        starts = [(i, start) for i, cell_grain, lo, hi in cell_ranges if cell_grain == grain
                  for start in _starts(grain, lo, hi)]
        if not starts:
            continue
        source = _CellSource(filters, key_names, grain, starts)
        for key, cell in scans.cells_of_rows(database.execute(source.totals()).fetchall(), source.width).items():
            cells.setdefault(key, statistics.Cell()).add(cell)
        rows = fetch_all(source.sketches())
        add_to_sketches([tuple(row[:source.width]) for row in rows],
                        [[row[source.width + m] for row in rows] for m in range(len(METRICS))],
                        sketches.add_sketches)
    if raw_ranges:
        scan = Scan(_raw_filters(filters), tuple(_raw_column(name) for name in key_names), ranges=raw_ranges)
        for key, cell in scans.cells(scan).items():
            cells.setdefault(key, statistics.Cell()).add(cell)
        rows = database.execute(scan.rows(*scans.METRIC_COLUMNS.values(), where=scans.OK)).fetchall()
        width = len(scan.key_columns)
        add_to_sketches([tuple(row[:width]) for row in rows],
                        [[row[width + m] for row in rows] for m in range(len(METRICS))],
                        sketches.add_values)
    estimates = sketches.values_at_ranks(statistics.ranks_needed)
    percentiles = [{} for _ in levels]
    for level_percentiles, level_groups in zip(percentiles, groups):
        for level_key, number in level_groups.items():
            level_percentiles[level_key] = {
                name: statistics.percentiles_from_ranks(*estimates[number * len(METRICS) + m])
                for m, name in enumerate(METRICS) if number * len(METRICS) + m in estimates}
    return cells, percentiles


def _state_and_months():
    """(needs rebuild, first and last month holding cells, or None): one statement."""
    def month_cell(pick):
        return (UsageRollup.select(pick(UsageRollup.cell_start))
                .where(UsageRollup.grain == "month"))
    row = (UsageRollupState
           .select(UsageRollupState.needs_rebuild, month_cell(fn.MIN), month_cell(fn.MAX))
           .tuples()
           .get())
    needs_rebuild, first, last = row
    if first is None:
        return bool(needs_rebuild), None, None
    return (bool(needs_rebuild), UsageRollup.cell_start.python_value(first),
            UsageRollup.cell_start.python_value(last))


def _starts(grain, lo, hi):
    """The starts of the cells of `grain` in [lo, hi)."""
    starts = []
    while lo < hi:
        starts.append(lo)
        lo = following(lo, grain)
    return starts


def _group_number(groups, level_groups, level_key):
    """A number for (level, level key), unique across all levels."""
    if level_key not in level_groups:
        level_groups[level_key] = sum(len(g) for g in groups)
    return level_groups[level_key]


def _raw_column(name):
    return getattr(LlmCall, "tenant" if name == "tenant_id" else name)


def _raw_filters(filters):
    where = SQL("1 = 1")
    for name, values in filters.items():
        where &= _raw_column(name).in_(values)
    return where


class _CellSource:
    """The cells of one grain starting at given instants [(window index,
    cell start)], grouped by (window index, *key).

    The cells are named by their starts (an equality join, at most one cell
    start per hour, day or month of the window), not by ranges: PostgreSQL
    planned a range join as a nested loop testing every (cell, range) pair
    (31 million for an hourly series: 8 s), and with the grain a column of
    the list, as a hash join on it that did the same."""

    def __init__(self, filters, key_names, grain, starts):
        self.range = range_cte = CTE("cover", values_list(starts), columns=("idx", "cell_start"))
        self.key = [range_cte.c.idx, *(_rollup_column(name) for name in key_names)]
        self.width = len(self.key)
        self.where = (UsageRollup.grain == grain) & (UsageRollup.cell_start == range_cte.c.cell_start)
        for name, values in filters.items():
            self.where &= _rollup_column(name).in_(values)

    def _select(self, columns, where):
        return (Select(from_list=[self.range], columns=[*self.key, *columns])
                .with_cte(self.range)
                .join(UsageRollup, JOIN.CROSS)
                .where(where)
                .bind(database))

    def totals(self):
        """Rows as scans.cells_of_rows reads them: counts over all calls, the rest over ok ones."""
        ok = UsageRollup.status == "ok"

        def of_ok(column):
            return Case(None, [(ok, column)])

        columns = [fn.SUM(UsageRollup.calls),
                   fn.SUM(Case(None, [(UsageRollup.status == "error", UsageRollup.calls)], 0)),
                   fn.SUM(of_ok(UsageRollup.calls)),
                   fn.SUM(of_ok(UsageRollup.cost_micro_usd))]
        for metric in METRICS:
            columns += [fn.SUM(of_ok(getattr(UsageRollup, f"{metric}_sum"))),
                        fn.MIN(of_ok(getattr(UsageRollup, f"{metric}_min"))),
                        fn.MAX(of_ok(getattr(UsageRollup, f"{metric}_max")))]
        return self._select(columns, self.where).group_by(*self.key)

    def sketches(self):
        """One row per ok cell: (window index, *key, three sketches)."""
        columns = [getattr(UsageRollup, name) for name in SKETCHES]
        return self._select(columns, self.where & (UsageRollup.status == "ok"))


def _rollup_column(name):
    """As llm_call has it: error_class NULL for ok calls (the cells store '')."""
    if name == "error_class":
        return fn.NULLIF(UsageRollup.error_class, "")
    return getattr(UsageRollup, name)
