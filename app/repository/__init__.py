"""The usage repository: the only package that builds SQL for llm_call and usage_rollup.

`UsageRepository` is the interface routes and the CLI use;
`PeeweeUsageRepository` implements it on SQLite and PostgreSQL:

- `scans`: aggregates of llm_call rows per group (with percentiles, for
  series), one statement each whatever the number of groups;
- `percentiles`: percentiles of llm_call rows per group, where the engines
  differ;
- `writes`: ingestion (bulk, idempotent inserts, and the rollups kept with them);
- `rollups`: usage_rollup, the cells `percentiles=approximate` reads;
- `calls_log`: the stored calls themselves, newest first, by page or in chunks;
- `retention`: the pruned range, and pruning llm_call (`deletes`: in chunks).

Statistics take a fixed number of statements whatever the number of
tenants, buckets and groups: per-tenant usage one (aggregates per
(operation, model) and the ok values, `scans.cells_with_percentiles`),
all-tenant usage two (aggregates per
(tenant, operation, model), percentiles per tenant and overall), a series
one (aggregates and percentiles per (bucket, group) together). Totals of coarser
groups are sums of the finer ones, merged in Python; percentiles are not
mergeable, so each level is sorted on its own (the tenants' and the
overall ones in one statement, `percentiles_per_group`). Each method runs in
one statistics transaction (one snapshot, DB_STATISTICS_TIMEOUT in all).
With `precision="approximate"` each method reads cells of usage_rollup and
the raw rows of the window's edges instead: four statements, whose cost
follows the number of cells, not of calls; unless no window holds a whole
cell (a UTC day), when the exact statements are the faster way.

Answers that need raw calls the retention pruned are refused with
retention.BeforeHorizon (409), by the one rule of `retention.refuse_pruned`,
before any statement of theirs: the exact ones read the pruned range first
(one statement more), the approximate ones with the rollups' state.
"""
from typing import Protocol

from peewee import SQL

from .. import statistics
from ..db import statistics_transaction
from ..models import LlmCall
from ..retention import refuse_pruned
from ..statistics import BREAKDOWNS, Cell, Totals
from . import calls_log, retention, rollups, scans
from .columns import COLUMNS
from .percentiles import percentiles_per_group
from .scans import Scan
from .writes import add_calls

# `precision` of the statistics: percentiles computed from the raw rows, or
# estimated from rollups (app/statistics.py says what each means).
EXACT, APPROXIMATE = PRECISIONS = ("exact", "approximate")


class UsageRepository(Protocol):
    def tenant_usage(self, tenant_id, window, precision=EXACT): ...

    def all_usage(self, window, precision=EXACT): ...

    def series(self, buckets, group_by, filters, precision=EXACT): ...

    def add_calls(self, rows): ...  # -> writes.Added

    def calls_page(self, window, filters, limit, high_water_id=None, after=None): ...  # -> calls_log.page

    def calls_export(self, window, filters): ...  # -> calls_log.chunks


class PeeweeUsageRepository:
    @statistics_transaction
    def tenant_usage(self, tenant_id, window, precision="exact"):
        """The statistics object of one tenant: one statement (four approximate)."""
        if _approximate(precision, [window], ("tenant_id", "operation", "model")):
            totals, (percentiles,) = rollups.approximate(
                {"tenant_id": [tenant_id]}, ("operation", "model"), [(window.start, window.end)], (),
                [lambda key: ()])
            cell, breakdowns = _merged((key[1:], c) for key, c in _cells(totals).items())
            _set_percentiles(cell, percentiles.get(()))
            return statistics.usage_stats(tenant_id, cell, breakdowns)
        _refuse_pruned([window])
        where = _in_window(window) & (LlmCall.tenant == tenant_id)
        cells, percentiles = scans.cells_with_percentiles(Scan(where, (LlmCall.operation, LlmCall.model)))
        cell, breakdowns = _merged(cells.items())
        _set_percentiles(cell, percentiles)
        return statistics.usage_stats(tenant_id, cell, breakdowns)

    @statistics_transaction
    def all_usage(self, window, precision="exact"):
        """(per-tenant statistics sorted by tenant_id, grand total): two
        statements (four approximate)."""
        if _approximate(precision, [window], ("tenant_id", "operation", "model")):
            totals, (tenant_percentiles, total_percentiles) = rollups.approximate(
                {}, ("tenant_id", "operation", "model"), [(window.start, window.end)], ("tenant_id",),
                [lambda key: (key[1],), lambda key: ()])
            return _all_usage({key[1:]: c for key, c in _cells(totals).items()},
                              tenant_percentiles, total_percentiles.get(()))
        _refuse_pruned([window])
        where = _in_window(window)
        finest = scans.cells(Scan(where, (LlmCall.tenant, LlmCall.operation, LlmCall.model)))
        percentiles = percentiles_per_group(Scan(where, (LlmCall.tenant,)), with_total=True)
        return _all_usage(finest, percentiles, percentiles.get(()))

    @statistics_transaction
    def series(self, buckets, group_by, filters, precision="exact"):
        """For each bucket, its groups (statistics.bucket_groups): one statement
        (four approximate).

        `filters`: {column name: [values]}, each meaning any of the values.
        """
        if _approximate(precision, buckets, {*filters, *group_by}):
            totals, (percentiles,) = rollups.approximate(
                filters, group_by, [(b.start, b.end) for b in buckets], group_by, [lambda key: key])
            return _bucket_groups(buckets, group_by, statistics.numbers_of_estimates(totals, percentiles))
        _refuse_pruned(buckets)
        # No window condition of its own: the buckets tile the window (the
        # Scan bounds it where that helps), and a constant range here would
        # tempt SQLite to scan the whole window for every bucket instead of
        # the bucket's own range (measured 7x slower).
        scan = Scan(scans.matching(filters), tuple(COLUMNS[name] for name in group_by), buckets)
        width = len(scan.key_columns)
        rows = scans.series_rows(scan)
        return _bucket_groups(buckets, group_by,
                              zip((tuple(row[:width]) for row in rows), statistics.numbers_of_rows(rows, width)))

    add_calls = staticmethod(add_calls)

    def calls_page(self, window, filters, limit, high_water_id=None, after=None):
        """A page of the call log (`calls_log.page`); `filters` as for `series`."""
        return calls_log.page(_in_window(window) & scans.matching(filters), limit, high_water_id, after)

    def calls_export(self, window, filters):
        """Every call of the window and filters, in chunks (`calls_log.chunks`)."""
        return calls_log.chunks(_in_window(window) & scans.matching(filters))


def _approximate(precision, windows, names):
    """Whether to answer from rollups: `approximate` asked for, and cells in
    some window for an answer keyed and filtered by `names`. Without any,
    the exact path is the faster one, and its percentiles are within any
    bound (`rollups.reads_cells`)."""
    return precision == APPROXIMATE and rollups.reads_cells([(w.start, w.end) for w in windows], names)


def _cells(totals):
    """{key: Cell} of rollups.approximate's {key: aggregates}."""
    return scans.cells_of_rows([(*key, *aggregates) for key, aggregates in totals.items()],
                               len(next(iter(totals), ())))


def _bucket_groups(buckets, group_by, keyed_numbers):
    """Each bucket's groups (statistics.bucket_groups) from ((bucket index,
    *key), numbers) pairs."""
    per_bucket = [{} for _ in buckets]
    for key, numbers in keyed_numbers:
        per_bucket[key[0]][key[1:]] = numbers
    zero = statistics.numbers(Cell())
    return [statistics.bucket_groups(group_by, numbers, zero) for numbers in per_bucket]


def _refuse_pruned(windows):
    """The exact path reads the raw calls of every window (or bucket) whole:
    retention.BeforeHorizon if any of them were pruned. One statement."""
    refuse_pruned(retention.pruned(), [(w.start, w.end) for w in windows])


def _in_window(window):
    condition = SQL("1 = 1")
    if window.start is not None:
        condition &= LlmCall.timestamp >= window.start
    if window.end is not None:
        condition &= LlmCall.timestamp < window.end
    return condition


def _all_usage(finest, tenant_percentiles, total_percentiles):
    """(tenants, total) from {(tenant, operation, model): Cell} and percentiles."""
    by_tenant = {}
    for (tenant_id, *rest), cell in finest.items():
        by_tenant.setdefault(tenant_id, {})[tuple(rest)] = cell
    tenants = []
    for tenant_id in sorted(by_tenant):
        cell, breakdowns = _merged(by_tenant[tenant_id].items())
        _set_percentiles(cell, tenant_percentiles.get((tenant_id,)))
        tenants.append(statistics.usage_stats(tenant_id, cell, breakdowns))
    cell, breakdowns = _merged((tuple(key[1:]), c) for key, c in finest.items())
    _set_percentiles(cell, total_percentiles)
    return tenants, statistics.usage_stats(None, cell, breakdowns)


def _merged(pairs):
    """(one Cell for all, {breakdown dimension: {value: Totals}}) from
    ((operation, model), Cell) pairs."""
    whole = Cell()
    breakdowns = {dimension: {} for dimension in BREAKDOWNS}
    for (operation, model), cell in pairs:
        whole.add(cell)
        for dimension, value in zip(BREAKDOWNS, (operation, model)):
            breakdowns[dimension].setdefault(value, Totals()).add(cell.totals)
    return whole, breakdowns


def _set_percentiles(cell, values):
    for name, by_pct in (values or {}).items():
        cell.metrics[name].set_percentiles(by_pct)
