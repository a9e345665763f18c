"""Percentiles of llm_call rows per group: the one place the engines differ.

PostgreSQL computes them with `percentile_cont` (measured 2.4x faster than
window-function ranks there). SQLite, which has none, hands over each
group's values in one scan as texts, which NumPy parses and sorts to give
the values at `statistics.percentile_ranks`; see app/statistics.py for why
the answers are identical. A tenant's usage takes the texts on both
engines (`values_text`, `percentiles_of_texts`), in the one statement that
also gives its aggregates (`scans.cells_with_percentiles`).
"""
import numpy as np
from peewee import SQL, EnclosedNodeList, NodeList, PostgresqlDatabase, fn

from .. import statistics
from ..db import database
from ..statistics import METRICS, PERCENTILES
from .columns import METRIC_COLUMNS, OK


def percentiles_per_group(scan, with_total=False):
    """{key: {metric: {pct: value}}} over ok records: one statement.

    `with_total`: also the percentiles over every group together, under the
    key (): one scan for both, where a second statement would read the
    window again (every tenant over all history: PostgreSQL 1.02 -> 0.88 s,
    SQLite 0.9 -> 0.5 s).
    """
    if isinstance(database.obj, PostgresqlDatabase):
        return _percentile_cont(scan, with_total)
    return _sorted_values(scan, with_total)


def _percentile_cont(scan, with_total):
    """PostgreSQL: `percentile_cont(ARRAY[0.05, ...]) WITHIN GROUP (ORDER BY metric)`,
    and for the total GROUP BY GROUPING SETS ((key), ())."""
    columns = [percentile_cont_of(column) for column in METRIC_COLUMNS.values()]
    key = scan.key_columns
    width = len(key)
    with_total = with_total and width > 0
    if with_total:
        # GROUPING(key) is 0 on the groups' rows and not 0 on the total's,
        # whose key is all NULL (as a group's may be too).
        query = (scan.grouped(fn.GROUPING(*key), *columns, where=OK)
                 .group_by(NodeList((SQL("GROUPING SETS"),
                                     EnclosedNodeList([EnclosedNodeList(key), SQL("()")])))))
    else:
        query = scan.grouped(*columns, where=OK)
    first_value = width + 1 if with_total else width
    result = {}
    for row in database.execute(query).fetchall():
        values = row[first_value:]
        if values[0] is None:
            continue  # no ok records (no GROUP BY, or the total): the aggregate of nothing
        group = () if with_total and row[width] else tuple(row[:width])
        result[group] = {name: dict(zip(PERCENTILES, by_pct)) for name, by_pct in zip(METRICS, values)}
    return result


def percentile_cont_of(column, where=None, extremes=False):
    """`percentile_cont(ARRAY[0.05, ...]) WITHIN GROUP (ORDER BY column)`, over
    the records `where` holds for (FILTER) if given: an array of the values at
    PERCENTILES, with `extremes` between the minimum and the maximum (at 0 and 1)."""
    at = [p / 100 for p in PERCENTILES]
    fractions = SQL("ARRAY[%s]" % ", ".join(map(str, [0, *at, 1] if extremes else at)))
    nodes = [fn.percentile_cont(fractions), SQL("WITHIN GROUP"),
             EnclosedNodeList([NodeList((SQL("ORDER BY"), column))])]
    if where is not None:
        nodes += [SQL("FILTER"), EnclosedNodeList([NodeList((SQL("WHERE"), where))])]
    return NodeList(nodes)


def _sorted_values(scan, with_total):
    """SQLite: each group's ok values as one text per metric (GROUP_CONCAT),
    parsed and sorted by NumPy; statistics.percentile reads the ranks off them.

    Measured on 1M calls, every tenant over all history: reading the values
    row by row (a Python tuple and three ints per row) and sorting them in
    Python took 3.5 s a statement; the texts cross the driver in 0.45 s and
    NumPy parses and sorts them in about 0.15 s. The order GROUP_CONCAT joins
    the values in does not matter: they are sorted here. The total is the
    groups' sorted arrays joined and sorted again.

    Memory: one group at a time (the cursor yields one row per group): its
    three texts, up to 11 bytes a value (5 or 6 typically), and its three
    arrays, 8 bytes a value and a copy while sorting; measured peak 41 MB in
    Python for one group of 900,000 ok records. `with_total` keeps every
    group's arrays, 24 bytes per ok record of the scan, until the total is
    sorted (peak 36 MB for 50 groups of 900,000 in all). SQLite caps a text
    at 1e9 bytes (SQLITE_MAX_LENGTH): 90M to 170M ok records in one group.
    """
    width = len(scan.key_columns)
    columns = [fn.GROUP_CONCAT(column) for column in METRIC_COLUMNS.values()]
    result = {}
    parts = [[] for _ in METRICS] if with_total and width else None  # [metric][group]: sorted array
    for row in database.execute(scan.grouped(*columns, where=OK)):
        if row[width] is None:
            continue  # no GROUP BY and no ok records: the aggregate of nothing
        arrays = [_sorted(text) for text in row[width:]]
        result[tuple(row[:width])] = {name: _percentiles_of_sorted(values)
                                      for name, values in zip(METRICS, arrays)}
        if parts is not None:
            for metric_parts, values in zip(parts, arrays):
                metric_parts.append(values)
    if parts and parts[0]:
        result[()] = {name: _percentiles_of_sorted(np.sort(np.concatenate(metric_parts)))
                      for name, metric_parts in zip(METRICS, parts)}
    return result


def _percentiles_of_sorted(values):
    """{pct: value} of a sorted NumPy array of integers."""
    n = len(values)
    if n <= 1000:
        # A series has thousands of small groups: converting a small array
        # whole is several times quicker than picking its ranks.
        by_rank = values.tolist()
    else:
        # Exact Python ints at the ranks the percentiles need (the rank after
        # the last is never read: its weight is zero).
        by_rank = {rank: values.item(rank) for pct in PERCENTILES
                   for rank in statistics.percentile_ranks(n, pct) if rank < n}
    return statistics.percentiles_from_ranks(n, by_rank)


def values_text(column):
    """The aggregate of a group's ok values of `column` as one comma-separated
    text (SQLite's GROUP_CONCAT, PostgreSQL's string_agg), for `percentiles_of_texts`."""
    if isinstance(database.obj, PostgresqlDatabase):
        return fn.string_agg(column.cast("text"), ",").filter(OK)
    return fn.GROUP_CONCAT(column).filter(OK)


def percentiles_of_texts(texts):
    """{pct: value} of the integers of several `values_text` texts together
    (None for no text: no ok records)."""
    texts = [text for text in texts if text]
    return _percentiles_of_sorted(_sorted(",".join(texts))) if texts else None


def values_at_percentiles(text):
    """The values at PERCENTILES of the integers in a comma-separated text (None: Nones)."""
    by_pct = percentiles_of_texts([text])
    return [by_pct[pct] for pct in PERCENTILES] if by_pct else (None,) * len(PERCENTILES)


def _sorted(text):
    """The integers of a comma-separated text (GROUP_CONCAT's), as a sorted NumPy array."""
    return np.sort(np.fromstring(text, dtype=np.int64, sep=","))
