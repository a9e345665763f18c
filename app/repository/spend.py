"""Budget spend in SQL: exact sums of calls, and the counters ingestion keeps.

What the numbers mean and when thresholds fire is app/budgets/; this module
only reads and writes them. Ingestion adds to a thousand counters a batch
(twenty budgets of fifty tenants): the statements are written here, their
rows as arrays (PostgreSQL) or VALUES (SQLite), not built by Peewee, which
took longer to render them than the database to run them.
"""
from peewee import PostgresqlDatabase, chunked

from ..db import bound_datetime, database, execute_many
from ..models import BudgetAlert, BudgetSpend, utcnow
from ..rollups import ceil, floor
from .arrays import array

SQLITE_CHUNK = 1000  # rows a statement: 4 to 6 parameters each, under SQLite's 32,766


def _stored_timestamp(moment):
    """Aware UTC -> naive UTC, as bound and stored (`bound_datetime`)."""
    return bound_datetime(BudgetSpend.period_start.db_value(moment))


def spent(tenant_id, start, end, model=None, operation=None):
    """Micro-dollars of the tenant's ok calls with start <= timestamp < end,
    of `model` and `operation` where given: what /v1/usage sums for that window."""
    return spent_in_each([(tenant_id, start, end, model, operation)])[0]


def spent_in_each(windows):
    """[spent(*window) for each window], windows being (tenant_id, start, end,
    model, operation): exact sums, the whole UTC days of a window from its
    tenant's day cells of ok calls (which hold the exact cost of every call
    stored, pruned ones included), the part-days at its ends from llm_call.

    A budget's week or month in any zone is then some dozens of cells and at
    most two part-days of calls, not every call of the period: a backfill's
    first batch starts hundreds of counters for past periods, and a week of
    one tenant at 1M calls took 4.5 ms as calls (22 ms when their pages were
    not cached) against well under one as cells.

    The budgets of a tenant that share a period kind and zone share their
    windows, differing only in their filters: each distinct (tenant, start,
    end) is summed once per (model, operation), and each window adds up the
    sums its filters keep. One statement per SQLITE_CHUNK distinct spans."""
    spans = sorted({(tenant, start, end) for tenant, start, end, _, _ in windows})
    sums = {}  # (tenant, start, end) -> [(model, operation, micro-dollars)]
    for chunk in chunked(spans, SQLITE_CHUNK):
        for i, model, operation, cost in database.execute_sql(*_spans_sql(chunk)):
            sums.setdefault(chunk[i], []).append((model, operation, int(cost)))
    return [sum(cost for call_model, call_operation, cost in sums.get((tenant, start, end), ())
                if (model is None or model == call_model) and (operation is None or operation == call_operation))
            for tenant, start, end, model, operation in windows]


def _spans_sql(spans):
    """(sql, params) of the ok cost of each (tenant, start, end) span, by
    (model, operation): rows (span's index, model, operation, micro-dollars).
    A span's whole UTC days [days_from, days_to) are read from day cells,
    the rest from calls; a span holding no whole day is calls alone
    (days_from = days_to = end). While a rebuild is due (calls stored that
    no cell holds: migration 004) the whole days are read from calls too.

    PostgreSQL sums each span in a LATERAL subquery, so each is an index
    scan of its tenant's rows: joined to the spans, the planner chose to
    hash them against every call (6 s at 1M calls for 150 spans). SQLite,
    which has no LATERAL, loops over the spans and looks each up by index."""
    rows = []
    for i, (tenant, start, end) in enumerate(spans):
        days_from, days_to = ceil(start, "day"), floor(end, "day")
        if days_from >= days_to:
            days_from = days_to = end
        rows.append((i, tenant, *map(_stored_timestamp, (start, days_from, days_to, end))))
    values = ", ".join([f"({', '.join([database.param] * 6)})"] * len(rows))
    params = [value for row in rows for value in row]
    calls = "c.tenant_id = w.tenant_id AND c.status = 'ok' AND c.timestamp >= w.{} AND c.timestamp < w.{}"
    cells_hold_every_call = "NOT COALESCE((SELECT needs_rebuild FROM usage_rollup_state), TRUE)"
    conditions = [("c.model, c.operation, c.cost_micro_usd", "llm_call c", calls.format("starts", "days_from")),
                  ("c.model, c.operation, c.cost_micro_usd", "llm_call c", calls.format("days_to", "ends")),
                  ("r.model, r.operation, r.cost_micro_usd", "usage_rollup r",
                   "r.tenant_id = w.tenant_id AND r.grain = 'day' AND r.status = 'ok' "
                   f"AND r.cell_start >= w.days_from AND r.cell_start < w.days_to AND {cells_hold_every_call}"),
                  ("c.model, c.operation, c.cost_micro_usd", "llm_call c",
                   f"{calls.format('days_from', 'days_to')} AND NOT ({cells_hold_every_call})")]
    spans_cte = f"WITH w(i, tenant_id, starts, days_from, days_to, ends) AS (VALUES {values}) "
    if isinstance(database.obj, PostgresqlDatabase):
        parts = " UNION ALL ".join(f"SELECT {columns} FROM {table} WHERE {where}"
                                   for columns, table, where in conditions)
        return (f"{spans_cte}SELECT w.i, p.model, p.operation, p.cost FROM w CROSS JOIN LATERAL "
                f"(SELECT model, operation, SUM(cost_micro_usd) AS cost FROM ({parts}) AS u "
                "GROUP BY model, operation) AS p", params)
    parts = " UNION ALL ".join(f"SELECT w.i, {columns} FROM w JOIN {table} ON {where}"
                               for columns, table, where in conditions)
    return f"{spans_cte}SELECT i, model, operation, SUM(cost_micro_usd) FROM ({parts}) GROUP BY 1, 2, 3", params


def counter_writes(deltas):
    """[(sql, params)] adding {(budget_id, revision, period_start):
    micro-dollars} to their counters; `counted` reads their rows.

    One INSERT ... ON CONFLICT DO UPDATE ... RETURNING, its rows in key
    order: PostgreSQL locks each counter row until COMMIT, in that order, so
    concurrent batches take turns on a counter without deadlocking, and each
    reads back the sum that includes every batch committed before it.
    """
    keys = sorted(deltas)
    stored = _stored_starts(keys)
    columns = [[budget_id for budget_id, _, _ in keys], [revision for _, revision, _ in keys],
               [stored[start] for _, _, start in keys], [deltas[key] for key in keys]]
    upsert = ("ON CONFLICT (budget_id, revision, period_start) DO UPDATE SET spent_micro_usd = "
              "budget_spend.spent_micro_usd + excluded.spent_micro_usd "
              "RETURNING budget_id, revision, period_start, spent_micro_usd, initialized")
    into = "INSERT INTO budget_spend (budget_id, revision, period_start, spent_micro_usd, initialized)"
    if isinstance(database.obj, PostgresqlDatabase):
        types = ("bigint", "integer", "timestamp", "bigint")
        return [(f"{into} SELECT *, false FROM unnest(%b::bigint[], %b::integer[], %b::timestamp[], "
                 f"%b::bigint[]) {upsert}", [array(t, column) for t, column in zip(types, columns)])]
    rows = list(zip(*columns))
    return [(f"{into} VALUES {', '.join(['(?, ?, ?, ?, 0)'] * len(chunk))} {upsert}",
             [value for row in chunk for value in row]) for chunk in chunked(rows, SQLITE_CHUNK)]


def counted(deltas, written):
    """{(budget_id, revision, period_start): (spent after, fresh)} from the
    rows `written` (a list per statement of `counter_writes(deltas)`). A
    row the statement inserted is `fresh`: it holds this batch's delta only,
    and the caller sets it to the exact sum (`initialize`).

    The rows come back with period_start as the database holds it (naive
    UTC; on SQLite the text `bound_datetime` sent): mapped back to the keys
    sent, not parsed, which took 11 ms of a backfill batch's 1,500
    counters; each period start's form worked out once (a batch's counters
    share a few), not per counter."""
    returned = _stored_starts(deltas)
    sent = {(budget_id, revision, returned[start]): (budget_id, revision, start)
            for budget_id, revision, start in deltas}
    return {sent[budget_id, revision, start]: (int(after), not initialized)
            for rows in written for budget_id, revision, start, after, initialized in rows}


def _stored_starts(keys):
    """{period start: `_stored_timestamp` of it} for (budget_id, revision,
    period_start) keys: each of a batch's few starts worked out once."""
    return {start: _stored_timestamp(start) for start in {start for _, _, start in keys}}


def initialize(exact):
    """Set fresh counters {key: micro-dollars} to the exact sums of their
    periods: one statement (a backfill's first batch starts hundreds)."""
    rows = [(spent_micro_usd, budget_id, revision, _stored_timestamp(start))
            for (budget_id, revision, start), spent_micro_usd in sorted(exact.items())]
    if isinstance(database.obj, PostgresqlDatabase):
        types = ("bigint", "bigint", "integer", "timestamp")
        database.execute_sql(
            "UPDATE budget_spend AS s SET spent_micro_usd = v.spent, initialized = true "
            "FROM unnest(%b::bigint[], %b::bigint[], %b::integer[], %b::timestamp[]) AS v(spent, budget_id, revision, "
            "period_start) WHERE s.budget_id = v.budget_id AND s.revision = v.revision "
            "AND s.period_start = v.period_start", [array(t, column) for t, column in zip(types, zip(*rows))])
    else:
        execute_many("UPDATE budget_spend SET spent_micro_usd = ?, initialized = 1 "
                     "WHERE budget_id = ? AND revision = ? AND period_start = ?", rows)


def start_counter(key, spent_micro_usd):
    """The counter of a budget's current period, at a new budget or revision
    (which waits for ingestion: nothing else writes it meanwhile)."""
    budget_id, revision, start = key
    BudgetSpend.insert(budget_id=budget_id, revision=revision, period_start=start,
                       spent_micro_usd=spent_micro_usd, initialized=True).on_conflict_ignore().execute()


def claim_alerts(claims):
    """Record that thresholds fired, `claims` being (budget_id, revision,
    period_start, threshold) tuples; return the set of those not recorded
    before (the primary key refuses a second one, whichever transaction
    tries). Inserted in key order, as the counters are, so two batches
    claiming the same thresholds take turns without deadlocking."""
    claimed, now = set(), utcnow()
    for chunk in chunked(sorted(claims), SQLITE_CHUNK // 5):
        rows = [{"budget_id": budget_id, "revision": revision, "period_start": start, "threshold": threshold,
                 "fired_at": now} for budget_id, revision, start, threshold in chunk]
        claimed.update(BudgetAlert
                       .insert_many(rows)
                       .on_conflict_ignore()
                       .returning(BudgetAlert.budget_id, BudgetAlert.revision, BudgetAlert.period_start,
                                  BudgetAlert.threshold)
                       .tuples()
                       .execute())
    return claimed


def forget_budget(budget_id):
    """A deleted budget's counters and alerts."""
    BudgetSpend.delete().where(BudgetSpend.budget_id == budget_id).execute()
    BudgetAlert.delete().where(BudgetAlert.budget_id == budget_id).execute()
