"""Raw scans of llm_call: aggregates per group of records (and, for series,
percentiles with them).

A `Scan` names the records (a WHERE condition, and for series the calendar
buckets they fall in) and the key they are grouped by, e.g. (tenant,
operation, model) or (bucket, operation). Each function below runs one
statement whatever the number of groups and returns {key tuple: ...}.
Percentiles of a Scan on their own, where the engines differ:
`percentiles.percentiles_per_group`.
"""
import json
from dataclasses import dataclass
from datetime import timezone

from peewee import CTE, JOIN, SQL, EnclosedNodeList, NodeList, PostgresqlDatabase, Select, fn

from ..db import database
from ..models import LlmCall, Tenant
from ..statistics import METRICS, PERCENTILES, Cell, MetricTotals, Totals
from .columns import COLUMNS, METRIC_COLUMNS, OK, OK_LITERAL
from .percentiles import percentile_cont_of, percentiles_of_texts, values_at_percentiles, values_text

@dataclass
class Scan:
    """Which records (`where`, and `buckets` for series), grouped by which `key`.

    `key`: LlmCall columns; with buckets, the bucket's index comes first in
    every key tuple.
    """

    where: object
    key: tuple = ()
    buckets: list | None = None
    # Or instead of buckets, [(index, lo, hi)]: several time ranges may share an index.
    ranges: list | None = None

    def __post_init__(self):
        self._bucket = self._bucket_index = None
        if self.buckets is not None and isinstance(database.obj, PostgresqlDatabase):
            self._bucket_index = _bucket_index(self.buckets)
            return
        if self.buckets is not None:
            self.ranges = [(i, b.start, b.end) for i, b in enumerate(self.buckets)]
        if self.ranges:
            self._bucket = CTE("bucket", values_list(self.ranges), columns=("idx", "lo", "hi"))

    @property
    def key_columns(self):
        if self._bucket_index is not None:
            return (self._bucket_index, *self.key)
        return (self._bucket.c.idx, *self.key) if self._bucket is not None else self.key

    def _source(self, columns, where):
        """SELECT columns FROM the records' source WHERE ..."""
        condition = self.where if where is None else self.where & where
        if self._bucket_index is not None:
            # The buckets tile the window: one range scan of it.
            return LlmCall.select(*columns).where(
                condition & (LlmCall.timestamp >= self.buckets[0].start)
                & (LlmCall.timestamp < self.buckets[-1].end))
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

    def grouped(self, *columns, where=None, by=()):
        """One row per group: the key, then `by` (more columns to group by,
        outside the key), then `columns` (aggregates)."""
        group = [*self.key_columns, *by]
        if self._bucket_index is not None:
            # By position: the bucket index's expression, edges and all, once.
            group = [SQL(str(position)) for position in range(1, len(group) + 1)]
        return self._source([*self.key_columns, *by, *columns], where).group_by(*group)

    def rows(self, *columns, where=None):
        """One row per record: the key as k0, k1, ..., then `columns`."""
        key = [column.alias(f"k{i}") for i, column in enumerate(self.key_columns)]
        return self._source([*key, *columns], where)


def matching(filters):
    """The condition that each column of `filters` {name: [values]} is any of its values."""
    where = SQL("1 = 1")
    for name, values in filters.items():
        where &= COLUMNS[name].in_(values)
    return where


def values_list(rows):
    """VALUES (...), ... of ints, strings and instants, as literals: thousands
    of bound parameters took longer to render (Peewee) and to rewrite
    (psycopg) than the query to run. Only our own computed values go here."""
    return SQL("VALUES " + ", ".join(literals(row) for row in rows))


def literals(values):
    """(v, ...) of values as values_list writes them, e.g. for IN."""
    return "(" + ", ".join(map(_literal, values)) + ")"


def _literal(value):
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        assert value.isidentifier()  # grain names
        return f"'{value}'"
    return _timestamp(value)


def _bucket_index(buckets):
    """PostgreSQL: the index of the bucket each record falls in, by
    `width_bucket` over the buckets' edges (a binary search per record).

    The window is then one range scan of the timestamp index, as a
    hand-written `GROUP BY date_trunc(...)` would do; joining a VALUES list of
    the buckets instead took one index descent per bucket, measured 1.5x as
    long for 2,161 hours. The edges are one array literal of our own
    computed instants, like `values_list`: a list of datetimes as a bound
    parameter took psycopg longer to adapt than the query to run.
    """
    edges = [bucket.start for bucket in buckets] + [buckets[-1].end]
    # Naive UTC text: each edge in UTC, its "+00:00" cut off.
    text = ",".join(['"' + edge.astimezone(timezone.utc).isoformat(" ")[:-6] + '"' for edge in edges])
    return fn.width_bucket(LlmCall.timestamp, SQL(f"'{{{text}}}'::timestamp[]")) - 1


def _timestamp(moment):
    """An aware instant as a literal that compares like the stored column: naive
    UTC text as SQLite stores it, a typed TIMESTAMP on PostgreSQL."""
    text = "'" + moment.astimezone(timezone.utc).replace(tzinfo=None).isoformat(" ") + "'"
    return "TIMESTAMP " + text if isinstance(database.obj, PostgresqlDatabase) else text


def _rows(query):
    """All rows as tuples, straight from the driver's cursor: Peewee's row
    wrapper costs more than SQLite's sort when a series returns every value."""
    return database.execute(query).fetchall()


def cells(scan):
    """{key: Cell} of every group with records, percentiles left out: one statement."""
    return cells_of_rows(aggregate_rows(scan), len(scan.key_columns))


# The ok aggregates of a group without ok records: what COUNT and SUM, MIN,
# MAX over no rows give.
NO_OK_AGGREGATES = (0, None) + (None, None, None) * len(METRIC_COLUMNS)


def aggregate_rows(scan):
    """One row per group with records: the key, then as cells_of_rows reads
    them its count, failed count, ok count, ok cost, then sum, min, max of
    each metric over ok records: one statement."""
    # Grouped by status too, and the ok and error rows of each group merged
    # here: every aggregate then reads its column as it is. A CASE on status
    # in each of 13 aggregates took a quarter of the statement (measured on
    # 1M calls: one tenant's 30 days 8.8 -> 6.5 ms on PostgreSQL, 7.6 -> 6.3 ms
    # on SQLite; every tenant's history 341 -> 256 ms and 2.6 -> 2.3 s).
    statement, rows_of = aggregate_statement(scan)
    return rows_of(database.execute_sql(*statement).fetchall())


def aggregate_statement(scan):
    """aggregate_rows as ((sql, params), the function making its rows of the
    statement's), for statements run together (`pipelined`)."""
    query, rows_by_status = _by_status(scan, _aggregates())
    width = len(scan.key_columns)
    return query.sql(), lambda rows: _merged_statuses(rows_by_status(rows), width)


def _aggregates():
    """Count, cost, then sum, min, max of each metric: of a group and status."""
    columns = [fn.COUNT(SQL("*")), fn.SUM(LlmCall.cost_micro_usd)]
    for column in METRIC_COLUMNS.values():
        columns += [fn.SUM(column), fn.MIN(column), fn.MAX(column)]
    return columns


def _merged_statuses(rows, width):
    """aggregate_rows' rows from rows of (key..., status, count, cost, then
    sum, min, max of each metric), one per group and status."""
    groups = {}  # {key: [count, failed count, (ok count, ok cost, sum, min, max, ...)]}
    for row in rows:
        key, status, count, ok_aggregates = tuple(row[:width]), row[width], row[width + 1], row[width + 1:]
        group = groups.setdefault(key, [0, 0, NO_OK_AGGREGATES])
        group[0] += count
        if status == "ok":
            group[2] = ok_aggregates
        else:
            group[1] += count
    return [(*key, count, failed, *ok_aggregates) for key, (count, failed, ok_aggregates) in groups.items()]


def cells_with_percentiles(scan):
    """({key: Cell} of every group with records, the percentiles {metric:
    {pct: value}} of all their ok records together, or None): one statement.

    A tenant's statistics are this: its aggregates per (operation, model)
    and its percentiles, from one scan of its window that hands over the ok
    values as texts (`percentiles.values_text`), which NumPy sorts. Measured
    on 1M calls, one tenant's 30 days (6,800 calls) on PostgreSQL: 3.0 ms,
    against 4.1 for the aggregates and percentile_cont in two statements.
    The texts cost 3 x 5-11 bytes per ok call (about 120 MB for 10M calls
    in one window), as on SQLite, whose percentiles are computed this way.
    """
    texts = [values_text(column) for column in METRIC_COLUMNS.values()]
    rows = _rows(scan.grouped(*_aggregates(), *texts, by=[LlmCall.status]))
    by_status = [row[:-len(texts)] for row in rows]
    ok_texts = [row[-len(texts):] for row in rows]
    cells = cells_of_rows(_merged_statuses(by_status, len(scan.key_columns)), len(scan.key_columns))
    percentiles = {name: percentiles_of_texts(metric_texts) for name, metric_texts in zip(METRICS, zip(*ok_texts))}
    return cells, (percentiles if all(percentiles.values()) else None)


def _by_status(scan, columns):
    """(a query, the function making of its rows those of (key..., status,
    columns...), one per group and status)."""
    key = scan.key_columns
    if key and key[0] is LlmCall.tenant and not isinstance(database.obj, PostgresqlDatabase):
        return _by_status_per_tenant(scan, columns)
    return scan.grouped(*columns, by=[LlmCall.status]), list


def _by_status_per_tenant(scan, columns):
    """SQLite, keys led by the tenant: each tenant's groups from a correlated
    subquery, packed into one JSON array per tenant: still one statement.

    SQLite groups by sorting. One sort of every tenant's records runs through
    more memory than the CPU caches hold; a sort per tenant (20,000 records
    of 1M) stays in them, and each tenant is one range of the (tenant_id,
    timestamp) index. Measured on 1M calls, every tenant: all history 1.8 ->
    1.3 s, 30 days 555 -> 345 ms. Every call's tenant is in `tenant` (a
    foreign key), so the outer loop over `tenant` misses none.
    """
    owner = Tenant.alias("owner")
    rest = scan.key[1:]
    selected = [column.alias(f"c{i}") for i, column in enumerate([*rest, LlmCall.status, *columns])]
    groups = (LlmCall.select(*selected)
              .where(scan.where & (LlmCall.tenant == owner.tenant_id))
              .group_by(*rest, LlmCall.status)
              .alias("g"))
    packed = Select(from_list=[groups], columns=[
        fn.json_group_array(fn.json_array(*(getattr(groups.c, f"c{i}") for i in range(len(selected)))))])
    return owner.select(owner.tenant_id, packed), lambda rows: [
        (tenant_id, *group) for tenant_id, text in rows for group in json.loads(text)]


def series_rows(scan):
    """One row per group with records, as statistics.numbers_of_rows reads
    them: the key; count, failed count, ok count, ok cost; sum, min, max of
    each metric over ok records; then each metric's values at PERCENTILES
    over ok records (None without ok records): one statement.

    The aggregates of `aggregate_rows` and the percentiles of `percentiles_per_group`
    in one scan, as rows rather than Cells and dicts: a series of 2,161
    hours spent longer in a second scan and in Python objects per group than
    its hand-written SQL took in all. Each aggregate FILTERs the records it
    counts, so that a group is one row, not one per status to be merged in
    Python (the statement measured as fast either way; the merge, and
    fetching half as many rows again, cost about 8 ms of a series of 2,161
    hours).

    Read as cheaply as they can be (measured: a third less CPU to fetch
    2,161 rows): the cost as a bigint, not PostgreSQL's numeric SUM that
    arrives as a Decimal (a group would need 9.2e12 USD of calls to overflow
    it), and each percentile in a column of its own, not in an array.
    """
    postgres = isinstance(database.obj, PostgresqlDatabase)
    columns = [fn.COUNT(SQL("*")), fn.COUNT(SQL("*")).filter(LlmCall.status == "error"),
               fn.COUNT(SQL("*")).filter(OK), fn.SUM(LlmCall.cost_micro_usd).filter(OK).cast("bigint")]
    percentiles = []
    for column in METRIC_COLUMNS.values():
        if postgres:
            # (percentile_cont(...))[1], [2], ...: PostgreSQL computes the
            # aggregate once, as long as the copies are identical: 'ok' as a
            # literal, for a bound parameter each would make them differ in
            # a generic plan (psycopg prepares a query run 5 times; measured
            # 3x slower then). Its sort gives the minimum and the maximum
            # too (at 0 and 1, exact): MIN and MAX filtering every record
            # again took 15% of the statement.
            values = EnclosedNodeList([percentile_cont_of(column, where=OK_LITERAL, extremes=True)])
            at = [NodeList((values, SQL(f"[{i}]")), glue="") for i in range(1, len(PERCENTILES) + 3)]
            columns += [fn.SUM(column).filter(OK), at[0].cast("bigint"), at[-1].cast("bigint")]
            percentiles += at[1:-1]
        else:
            columns += [fn.SUM(column).filter(OK), fn.MIN(column).filter(OK), fn.MAX(column).filter(OK)]
            # SQLite: the ok values as one text, as values_at_percentiles reads them.
            percentiles.append(values_text(column))
    columns += percentiles
    width = len(scan.key_columns)
    # Without GROUP BY and without records: the one row of the aggregate of nothing.
    rows = [row for row in _rows(scan.grouped(*columns)) if row[width]]
    if postgres:
        return rows
    texts = len(METRIC_COLUMNS)
    return [(*row[:-texts], *(value for text in row[-texts:] for value in values_at_percentiles(text)))
            for row in rows]


def cells_of_rows(rows, width):
    """{key: Cell} from rows of (key..., count, failed, ok count, ok cost, then
    sum, min, max of each metric over ok records)."""
    result = {}
    for row in rows:
        key, (count, failed, ok_count, cost, *metric_values) = tuple(row[:width]), row[width:]
        if not count:
            continue  # no GROUP BY and no records: the aggregate of nothing
        metrics = {
            name: MetricTotals(int(ok_count or 0), int(metric_values[3 * i] or 0),
                               metric_values[3 * i + 1], metric_values[3 * i + 2])
            for i, name in enumerate(METRICS)
        }
        totals = Totals(int(count), int(failed), int(cost or 0),
                        metrics["input_tokens"].total, metrics["output_tokens"].total)
        result[key] = Cell(totals, metrics)
    return result
