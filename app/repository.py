"""The usage repository: the only module that builds SQL for llm_call.

`UsageRepository` is the interface routes and the CLI use; `PeeweeUsageRepository`
implements it on SQLite and PostgreSQL. Statistics take a fixed number of
statements whatever the number of tenants: aggregates per (tenant, operation),
aggregates of `ok` records per tenant, and one percentile statement per tenant
grouping (plus one for the grand total). Percentiles are the one place the
engines differ: `percentile_cont` on PostgreSQL (measured 2.4x faster than
window-function ranks there), window-function ranks on SQLite, which has no
percentile_cont; see app/statistics.py for why the answers are identical.
"""
import functools
import operator
from typing import Protocol

from peewee import SQL, Case, EnclosedNodeList, NodeList, PostgresqlDatabase, Select, chunked, fn

from . import statistics
from .db import database
from .models import LlmCall
from .statistics import METRICS, PERCENTILES, MetricTotals, OperationTotals

METRIC_COLUMNS = {
    "call_duration": LlmCall.call_duration_ms,
    "input_tokens": LlmCall.input_tokens,
    "output_tokens": LlmCall.output_tokens,
}

# Rows per INSERT: 13 parameters a row stays well under SQLite's 32,766 limit.
INSERT_CHUNK = 500


class UsageRepository(Protocol):
    def tenant_usage(self, tenant_id, window): ...

    def all_usage(self, window): ...

    def add_calls(self, rows): ...


class PeeweeUsageRepository:
    def tenant_usage(self, tenant_id, window):
        """Statistics of one tenant: three statements."""
        where = _in_window(window) & (LlmCall.tenant == tenant_id)
        operations = [op for _, op in _operation_totals(where)]
        metrics = _metric_totals(where, per_tenant=True).get(tenant_id, {})
        return statistics.usage_stats(tenant_id, operations, metrics)

    def all_usage(self, window):
        """(per-tenant statistics sorted by tenant_id, grand total): four statements."""
        where = _in_window(window)
        by_tenant = {}
        for tenant_id, totals in _operation_totals(where):
            by_tenant.setdefault(tenant_id, []).append(totals)
        metrics = _metric_totals(where, per_tenant=True)
        tenants = [
            statistics.usage_stats(tenant_id, by_tenant[tenant_id], metrics.get(tenant_id, {}))
            for tenant_id in sorted(by_tenant)
        ]

        overall_operations = {}
        for totals in (t for group in by_tenant.values() for t in group):
            overall_operations.setdefault(totals.operation, OperationTotals(totals.operation)).add(totals)
        overall_metrics = {name: MetricTotals() for name in METRICS}
        for tenant_metrics in metrics.values():
            for name, totals in tenant_metrics.items():
                overall_metrics[name].add(totals)
        for name, values in _percentiles(where, per_tenant=False).get(None, {}).items():
            overall_metrics[name].percentiles = values
        total = statistics.usage_stats(None, overall_operations.values(), overall_metrics)
        return tenants, total

    def add_calls(self, rows):
        """Insert call rows (dicts of LlmCall columns); return (created, duplicates).

        A row whose (tenant, call_id) is already stored is skipped by the
        database's unique index (INSERT ... ON CONFLICT DO NOTHING), so
        concurrent retries of one batch cannot double count. Runs inside the
        caller's transaction when there is one.
        """
        received = created = 0
        with database.atomic():
            for chunk in chunked(rows, INSERT_CHUNK):
                received += len(chunk)
                query = (LlmCall
                         .insert_many(chunk)
                         .on_conflict(action="NOTHING",
                                      conflict_target=[LlmCall.tenant, LlmCall.call_id]))
                created += database.execute(query).rowcount
        return created, received - created


def _in_window(window):
    condition = SQL("1 = 1")
    if window.start is not None:
        condition &= LlmCall.timestamp >= window.start
    if window.end is not None:
        condition &= LlmCall.timestamp < window.end
    return condition


def _operation_totals(where):
    """[(tenant_id, OperationTotals)], one per (tenant, operation) with records."""
    ok = LlmCall.status == "ok"

    def ok_sum(column):
        return fn.SUM(Case(None, [(ok, column)], 0))

    query = (LlmCall
             .select(LlmCall.tenant,
                     LlmCall.operation,
                     fn.COUNT(LlmCall.id),
                     fn.SUM(Case(None, [(LlmCall.status == "error", 1)], 0)),
                     ok_sum(LlmCall.cost_micro_usd),
                     ok_sum(LlmCall.input_tokens),
                     ok_sum(LlmCall.output_tokens))
             .where(where)
             .group_by(LlmCall.tenant, LlmCall.operation)
             .tuples())
    return [
        (tenant_id, OperationTotals(operation, *(int(v) for v in numbers)))
        for tenant_id, operation, *numbers in query
    ]


def _metric_totals(where, per_tenant):
    """{tenant_id: {metric: MetricTotals}} over `ok` records, percentiles included."""
    columns = []
    for column in METRIC_COLUMNS.values():
        columns += [fn.SUM(column), fn.MIN(column), fn.MAX(column)]
    query = (LlmCall
             .select(LlmCall.tenant, fn.COUNT(LlmCall.id), *columns)
             .where(where & (LlmCall.status == "ok"))
             .group_by(LlmCall.tenant)
             .tuples())
    percentiles = _percentiles(where, per_tenant)
    result = {}
    for tenant_id, count, *numbers in query:
        result[tenant_id] = {
            name: MetricTotals(count, int(total), minimum, maximum,
                               percentiles.get(tenant_id, {}).get(name, {}))
            for name, (total, minimum, maximum) in zip(METRICS, chunked(numbers, 3))
        }
    return result


def _percentiles(where, per_tenant):
    """{tenant_id or None: {metric: {pct: value}}} over `ok` records: one statement."""
    if isinstance(database.obj, PostgresqlDatabase):
        return _percentile_cont(where, per_tenant)
    return _interpolated_ranks(where, per_tenant)


def _percentile_cont(where, per_tenant):
    """PostgreSQL: `percentile_cont(ARRAY[0.05, 0.95]) WITHIN GROUP (ORDER BY metric)`."""
    fractions = SQL("ARRAY[%s]" % ", ".join(str(p / 100) for p in PERCENTILES))
    columns = [
        NodeList((fn.percentile_cont(fractions), SQL("WITHIN GROUP"), EnclosedNodeList([
            NodeList((SQL("ORDER BY"), column))])))
        for column in METRIC_COLUMNS.values()
    ]
    group = [LlmCall.tenant] if per_tenant else []
    query = (LlmCall
             .select(*group, *columns)
             .where(where & (LlmCall.status == "ok"))
             .group_by(*group)
             .tuples())
    result = {}
    for row in query:
        grp, values = (row[0], row[1:]) if per_tenant else (None, row)
        if values[0] is not None:  # no ok records: the aggregate of nothing
            result[grp] = {name: dict(zip(PERCENTILES, pair)) for name, pair in zip(METRICS, values)}
    return result


def _interpolated_ranks(where, per_tenant):
    """SQLite: rank each metric with a window function, return only the rows at
    statistics.percentile_ranks, and interpolate in Python."""
    partition = [LlmCall.tenant] if per_tenant else []
    group = [LlmCall.tenant.alias("grp")] if per_tenant else [SQL("NULL").alias("grp")]
    ranks = [
        fn.ROW_NUMBER().over(partition_by=partition, order_by=[column]).alias(f"{name}_rank")
        for name, column in METRIC_COLUMNS.items()
    ]
    inner = (LlmCall
             .select(*group,
                     *[column.alias(name) for name, column in METRIC_COLUMNS.items()],
                     *ranks,
                     fn.COUNT(SQL("*")).over(partition_by=partition).alias("n"))
             .where(where & (LlmCall.status == "ok"))
             .alias("ranked"))
    n = inner.c.n
    # Zero-based ranks (n - 1) * p / 100 and the next: integer division on both engines.
    wanted = [(n - 1) * p / 100 + step for p in PERCENTILES for step in (0, 1)]
    condition = functools.reduce(
        operator.or_, [(getattr(inner.c, f"{name}_rank") - 1).in_(wanted) for name in METRICS]
    )
    query = (Select(from_list=[inner],
                    columns=[inner.c.grp, n,
                             *[getattr(inner.c, name) for name in METRICS],
                             *[getattr(inner.c, f"{name}_rank") for name in METRICS]])
             .where(condition)
             .bind(database))
    values_by_rank, sizes = {}, {}
    for grp, size, *row in query.tuples():
        values, ranks_ = row[: len(METRICS)], row[len(METRICS):]
        sizes[grp] = size
        per_metric = values_by_rank.setdefault(grp, {name: {} for name in METRICS})
        for name, value, rank in zip(METRICS, values, ranks_):
            per_metric[name][rank - 1] = value
    return {
        grp: {name: statistics.percentiles_from_ranks(sizes[grp], by_rank)
              for name, by_rank in per_metric.items()}
        for grp, per_metric in values_by_rank.items()
    }
