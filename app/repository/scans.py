"""Raw scans of llm_call: aggregates and percentiles per group of records.

A `Scan` names the records (a WHERE condition, and for series the calendar
buckets they fall in) and the key they are grouped by, e.g. (tenant,
operation, model) or (bucket, operation). Each function below runs one
statement whatever the number of groups and returns {key tuple: ...}.

Percentiles are the one place the engines differ: `percentile_cont` on
PostgreSQL (measured 2.4x faster than window-function ranks there), and on
SQLite, which has none, one ordered scan of the values whose sorted lists
give the values at `statistics.percentile_ranks`; see app/statistics.py for
why the answers are identical.
"""
import itertools
from dataclasses import dataclass
from datetime import timezone

from peewee import CTE, JOIN, SQL, Case, EnclosedNodeList, NodeList, PostgresqlDatabase, Select, fn

from .. import statistics
from ..db import database
from ..models import LlmCall
from ..statistics import METRICS, PERCENTILES, Cell, MetricTotals, Totals

METRIC_COLUMNS = {
    "call_duration": LlmCall.call_duration_ms,
    "input_tokens": LlmCall.input_tokens,
    "output_tokens": LlmCall.output_tokens,
}
OK = LlmCall.status == "ok"


@dataclass
class Scan:
    """Which records (`where`, and `buckets` for series), grouped by which `key`.

    `key`: LlmCall columns; with buckets, the bucket's index comes first in
    every key tuple.
    """

    where: object
    key: tuple = ()
    buckets: list | None = None

    def __post_init__(self):
        self._bucket = None
        if self.buckets is not None:
            # VALUES (0, lo, hi), (1, lo, hi), ... as literals of our own
            # computed instants: thousands of bound parameters took longer to
            # render (Peewee) and to rewrite (psycopg) than the query to run.
            rows = ", ".join(f"({i}, {_timestamp(b.start)}, {_timestamp(b.end)})"
                             for i, b in enumerate(self.buckets))
            self._bucket = CTE("bucket", SQL(f"VALUES {rows}"), columns=("idx", "lo", "hi"))

    @property
    def key_columns(self):
        return (self._bucket.c.idx, *self.key) if self._bucket is not None else self.key

    def _source(self, columns, where):
        """SELECT columns FROM the records' source WHERE ..."""
        condition = self.where if where is None else self.where & where
        if self._bucket is None:
            return LlmCall.select(*columns).where(condition)
        # Calendar buckets as a VALUES list joined on [lo, hi). CROSS JOIN keeps
        # the buckets as the outer loop on SQLite (which never reorders it), so
        # each bucket is one range scan of the timestamp index, as on PostgreSQL.
        bucket = self._bucket
        return (Select(from_list=[bucket], columns=columns)
                .with_cte(bucket)
                .join(LlmCall, JOIN.CROSS)
                .where(condition & (LlmCall.timestamp >= bucket.c.lo) & (LlmCall.timestamp < bucket.c.hi))
                .bind(database))

    def grouped(self, *columns, where=None):
        """One row per group: the key, then `columns` (aggregates)."""
        return self._source([*self.key_columns, *columns], where).group_by(*self.key_columns)

    def rows(self, *columns, where=None):
        """One row per record: the key as k0, k1, ..., then `columns`."""
        key = [column.alias(f"k{i}") for i, column in enumerate(self.key_columns)]
        return self._source([*key, *columns], where)


def _timestamp(moment):
    """An aware instant as a literal that compares like the stored column: naive
    UTC text as SQLite stores it, a typed TIMESTAMP on PostgreSQL."""
    text = "'" + moment.astimezone(timezone.utc).replace(tzinfo=None).isoformat(" ") + "'"
    return "TIMESTAMP " + text if isinstance(database.obj, PostgresqlDatabase) else text


def _rows(query):
    """All rows as tuples, straight from the driver's cursor: Peewee's row
    wrapper costs more than SQLite's sort when a series returns every value."""
    return database.execute(query).fetchall()


def _ok(expression):
    """The expression for ok records, NULL for errors (which SUM, MIN, MAX, COUNT skip)."""
    return Case(None, [(OK, expression)])


def cells(scan):
    """{key: Cell} of every group with records, percentiles left out: one statement."""
    columns = [fn.COUNT(SQL("*")),
               fn.SUM(Case(None, [(LlmCall.status == "error", 1)], 0)),
               fn.COUNT(_ok(SQL("1"))),
               fn.SUM(_ok(LlmCall.cost_micro_usd))]
    for column in METRIC_COLUMNS.values():
        columns += [fn.SUM(_ok(column)), fn.MIN(_ok(column)), fn.MAX(_ok(column))]
    width = len(scan.key_columns)
    result = {}
    for row in _rows(scan.grouped(*columns)):
        key, (count, failed, ok_count, cost, *metric_values) = tuple(row[:width]), row[width:]
        if not count:
            continue  # no GROUP BY and no records: the aggregate of nothing
        metrics = {
            name: MetricTotals(ok_count, int(metric_values[3 * i] or 0),
                               metric_values[3 * i + 1], metric_values[3 * i + 2])
            for i, name in enumerate(METRICS)
        }
        totals = Totals(count, int(failed), int(cost or 0),
                        metrics["input_tokens"].total, metrics["output_tokens"].total)
        result[key] = Cell(totals, metrics)
    return result


def percentiles(scan):
    """{key: {metric: {pct: value}}} over ok records: one statement."""
    if isinstance(database.obj, PostgresqlDatabase):
        return _percentile_cont(scan)
    return _sorted_values(scan)


def _percentile_cont(scan):
    """PostgreSQL: `percentile_cont(ARRAY[0.05, ...]) WITHIN GROUP (ORDER BY metric)`."""
    fractions = SQL("ARRAY[%s]" % ", ".join(str(p / 100) for p in PERCENTILES))
    columns = [
        NodeList((fn.percentile_cont(fractions), SQL("WITHIN GROUP"), EnclosedNodeList([
            NodeList((SQL("ORDER BY"), column))])))
        for column in METRIC_COLUMNS.values()
    ]
    width = len(scan.key_columns)
    return {
        tuple(row[:width]): {name: dict(zip(PERCENTILES, values))
                             for name, values in zip(METRICS, row[width:])}
        for row in _rows(scan.grouped(*columns, where=OK))
        if row[width] is not None  # no GROUP BY and no ok records: the aggregate of nothing
    }


def _sorted_values(scan):
    """SQLite: read each group's ok values once, in key order, sort them in
    Python and read the ranks off the sorted lists (statistics.percentile).

    Measured on 1M calls: three window-function sorts in SQLite took about
    4x as long as this one ordered scan and Python's sort. Memory holds one
    group's values at a time (rows are fetched in batches).
    """
    key = scan.key_columns
    width = len(key)
    cursor = database.execute(scan.rows(*METRIC_COLUMNS.values(), where=OK).order_by(*key))
    rows = itertools.chain.from_iterable(iter(lambda: cursor.fetchmany(10_000), []))
    result = {}
    for group, members in itertools.groupby(rows, key=lambda row: row[:width]):
        columns = list(zip(*(row[width:] for row in members)))
        n = len(columns[0])
        result[tuple(group)] = {name: statistics.percentiles_from_ranks(n, sorted(values))
                                for name, values in zip(METRICS, columns)}
    return result


def cells_with_percentiles(scan):
    """{key: Cell} with percentiles: two statements."""
    result = cells(scan)
    for key, values in percentiles(scan).items():
        for name, by_pct in values.items():
            result[key].metrics[name].percentiles = by_pct
    return result
