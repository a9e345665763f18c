"""The SQL of reading cells for `approximate` (read.py): one grain's cells at
given starts (`CellSource`), and the planner's costs for such reads."""
from peewee import CTE, JOIN, SQL, Case, PostgresqlDatabase, Select, fn

from ...db import database
from ...models import UsageRollup
from ...rollups import METRICS
from ..scans import literals, values_list
from .cells import METRIC_SKETCHES


def plan_for_cells():
    """On PostgreSQL, this transaction's planner costs a page read out of
    order as 1.1 sequential ones (SET LOCAL), not the default 4 of a spinning
    disk. A window's cells lie on few pages (a month's are written together,
    updated in place), but usage_rollup's identity index leads with `grain`,
    whose order on disk is loose (correlation 0.68 against cell_start's 0.96),
    so the planner chose a sequential scan of all cells for 30 days of day
    cells at 1M calls: 51 ms, against 25 ms through the index."""
    if isinstance(database.obj, PostgresqlDatabase):
        database.obj.set_local("random_page_cost", 1.1)


class CellSource:
    """The cells of one grain starting at given instants [(window index,
    cell start)], grouped by (window index, *key); those of one `status` alone if given.

    The cells are named by their starts (an equality join, at most one cell
    start per day or month of the window), not by ranges: PostgreSQL
    planned a range join as a nested loop testing every (cell, range) pair
    (31 million for an hourly series of the former hourly cells: 8 s), and
    with the grain a column of the list, as a hash join on it that did the
    same. Starts of a single
    window are a plain IN list and a constant index instead: PostgreSQL
    then estimates the rows well and hashes the groups (all history's month
    cells at 1M calls: 12 ms) where the join's estimate of a few rows made
    it sort them (28 ms)."""

    def __init__(self, filters, key_names, grain, starts, status=None):
        self.where = UsageRollup.grain == grain
        self.status = status
        if status is not None:
            self.where &= UsageRollup.status == status
        windows = {idx for idx, _ in starts}
        if len(windows) == 1:
            self.range = None
            self.key = [SQL(str(int(windows.pop())))]
            self.where &= UsageRollup.cell_start.in_(SQL(literals([start for _, start in starts])))
        else:
            self.range = range_cte = CTE("cover", values_list(starts), columns=("idx", "cell_start"))
            self.key = [range_cte.c.idx]
            self.where &= UsageRollup.cell_start == range_cte.c.cell_start
        self.key += [rollup_column(name) for name in key_names]
        self.width = len(self.key)
        for name, values in filters.items():
            self.where &= rollup_column(name).in_(values)

    def _select(self, columns, where):
        if self.range is None:
            return Select(from_list=[UsageRollup], columns=[*self.key, *columns]).where(where).bind(database)
        return (Select(from_list=[self.range], columns=[*self.key, *columns])
                .with_cte(self.range)
                .join(UsageRollup, JOIN.CROSS)
                .where(where)
                .bind(database))

    def _group_by(self):
        """The key without the window index, a constant when there is one
        window: grouping by grain as well (one value here) keeps an empty
        selection empty instead of one row of NULLs."""
        return [UsageRollup.grain, *self.key[1:]] if self.range is None else self.key

    def totals(self):
        """Rows as scans.cells_of_rows reads them: counts over all calls, the
        rest over ok ones. Cells of one status need no CASE per cell: adding
        up 30 days of day cells, PostgreSQL spends more time on the
        aggregates than on reading the cells (at 1M calls 17 ms for those of
        ok calls with plain sums, 24 with a CASE in each)."""
        def of_ok(aggregate, column):
            if self.status == "error":
                return SQL("NULL")
            return aggregate(column if self.status == "ok" else Case(None, [(UsageRollup.status == "ok", column)]))

        failed = {None: fn.SUM(Case(None, [(UsageRollup.status == "error", UsageRollup.calls)], 0)),
                  "ok": SQL("0"), "error": fn.SUM(UsageRollup.calls)}[self.status]
        columns = [fn.SUM(UsageRollup.calls), failed, of_ok(fn.SUM, UsageRollup.calls),
                   of_ok(fn.SUM, UsageRollup.cost_micro_usd)]
        for metric in METRICS:
            columns += [of_ok(fn.SUM, getattr(UsageRollup, f"{metric}_sum")),
                        of_ok(fn.MIN, getattr(UsageRollup, f"{metric}_min")),
                        of_ok(fn.MAX, getattr(UsageRollup, f"{metric}_max"))]
        return self._select(columns, self.where).group_by(*self._group_by())

    def tails(self):
        """One row per cell: (window index, *key, tail_numbers): app/day_tails.py."""
        return self._select([UsageRollup.tail_numbers], self.where)

    def sketches(self):
        """One row per ok cell: (window index, *key, three sketches)."""
        columns = [getattr(UsageRollup, name) for name in METRIC_SKETCHES]
        return self._select(columns, self.where & (UsageRollup.status == "ok"))


def rollup_column(name):
    """As llm_call has it: error_class NULL for ok calls (the cells store '').

    The '' is written into the SQL, not bound: PostgreSQL takes NULLIF(x, $1)
    in SELECT and NULLIF(x, $2) in GROUP BY for different expressions."""
    if name == "error_class":
        return fn.NULLIF(UsageRollup.error_class, SQL("''"))
    return getattr(UsageRollup, name)
