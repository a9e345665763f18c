"""Threshold alerts: every threshold a period's spend reaches fires exactly once.

`tally` and `count` run inside the transaction that stores a batch (POST
/v1/usage/calls and `calls import` alike), after its INSERT:

1. `tally` takes the budgets of the batch's tenants (`budgets_statement`,
   read right after the INSERT) and sums the batch's ok cost per (budget,
   period); `counter_writes` adds it to each counter it touches
   (`repository.spend`), and `count` goes on from their rows; in key
   order, getting back the counter's new value. The counter's row stays
   locked until COMMIT, so concurrent batches (other workers, overlapping
   retries, an import) take turns on it, and each sees the sum that holds
   every batch committed before it: spend goes up in one chain, and each
   threshold is crossed by exactly one batch.
2. A counter this batch created (the period's first batch since the budget
   or its revision began) is set to the exact sum of the period's calls,
   and every threshold up to it is due; otherwise the thresholds between
   the value before the batch and after it are.
3. Each due threshold is claimed in budget_alert, whose primary key
   (budget, revision, period, threshold) refuses a second claim from any
   transaction, and each claimed one publishes a `budget.threshold_crossed`
   event to the webhook outbox, in the same transaction: a batch that rolls
   back fires nothing, and a committed one loses no event.

A budget created or changed (amount, thresholds, filters, period, zone: a
new revision) fires at once, once, what its current period has already
reached (`fire_reached`). Creating or changing one waits for the batches of
its tenant in flight (app/budgets/service.py), so no batch stored meanwhile
can pass by uncounted.
"""
import functools
from collections import defaultdict, namedtuple
from typing import NamedTuple

from ..db import database
from ..models import Budget, micros_to_usd
from ..repository import spend
from ..webhooks import outbox
from . import periods, spending

EVENT = "budget.threshold_crossed"


def budgets_statement(tenant_ids):
    """(sql, params) reading the budgets of `tenant_ids`, for `tally`.

    Ingestion sends it in one round trip with its INSERT, after it: a budget
    being created or changed holds its tenant's row until it commits, and the
    INSERT waits for that row (its foreign key), so this read, which starts
    after the INSERT ends, sees every budget that did not count the batch."""
    tenant_ids = sorted(tenant_ids)
    return _budgets_sql(len(tenant_ids), database.param), tenant_ids


@functools.lru_cache(maxsize=64)
def _budgets_sql(tenant_count, param):
    """The statement for that many tenants (and the engine's `param`, which
    Peewee writes): Peewee took 3 ms a batch to render it."""
    sql, _ = (Budget
              .select(*(getattr(Budget, name) for name in _LightBudget._fields))
              .where(Budget.tenant.in_([""] * tenant_count))
              .sql())
    return sql


class Tally(NamedTuple):
    """What a batch adds to budgets: {budget id: budget}, {(budget id,
    revision, period start): micro-dollars} and {same key: Period}."""

    budgets: dict
    deltas: dict
    period_of: dict


def tally(costs, budget_rows):
    """The Tally of `costs` (`costs_of` the stored calls) against the budgets
    read by `budgets_statement` (its rows). Python only: ingestion works it
    out while the database writes the batch's rollup cells."""
    # Plain named tuples, not Budget models: a thousand models a batch took 50 ms to build.
    budgets = [_LightBudget._make(row) for row in budget_rows]
    if not costs or not budgets:
        return Tally({}, {}, {})
    return Tally({budget.id: budget for budget in budgets}, *_deltas(budgets, costs))


def counter_writes(batch):
    """[(sql, params)] adding a batch's Tally to its budgets' counters, in
    the storing transaction; their rows go to `count`."""
    return spend.counter_writes(batch.deltas) if batch.deltas else []


def count(batch, written):
    """Fire the thresholds a batch's Tally crosses, from the rows of its
    `counter_writes` (`written`, a list per statement). Call it in the
    storing transaction."""
    if not batch.deltas:
        return
    by_id, deltas, period_of = batch
    counted = spend.counted(deltas, written)
    fresh = [key for key, (_, is_fresh) in counted.items() if is_fresh]
    if fresh:  # the period's first batch since the budget or revision began: the exact sums
        exact = dict(zip(fresh, spend.spent_in_each([spending.window(by_id[key[0]], period_of[key]) for key in fresh])))
        spend.initialize(exact)
        counted.update((key, (spent, True)) for key, spent in exact.items())
    due = []  # (budget, Period, threshold, spent)
    for key, (after, is_fresh) in counted.items():
        budget = by_id[key[0]]
        before = None if is_fresh else after - deltas[key]
        due += [(budget, period_of[key], threshold, after)
                for threshold in spending.reached_between(spending.threshold_amounts(budget), before, after)]
    _publish(due)


# The Budget fields alerts read, under their attribute names (`tenant_id` is the column).
_LightBudget = namedtuple("_LightBudget", ("id", "tenant_id", "name", "amount_micro_usd", "period", "tz",
                                           "thresholds_text", "model", "operation", "revision"))


def fire_reached(budget, now):
    """Start the budget's current period's counter and fire what it has
    reached (a new budget or revision)."""
    period = spending.current_period(budget, now)
    spent = spending.spent_in(budget, period)
    spend.start_counter((budget.id, budget.revision, period.start), spent)
    _publish([(budget, period, threshold, spent)
              for threshold in spending.reached_between(spending.threshold_amounts(budget), None, spent)])


def costs_of(rows):
    """{(tenant, model, operation, minute): micro-dollars} of the ok rows with a cost.
    Periods start on whole minutes, so a minute lies in one period of every budget."""
    costs = defaultdict(int)
    for row in rows:
        if row["status"] == "ok" and row["cost_micro_usd"]:
            minute = row["timestamp"].replace(second=0, microsecond=0)
            costs[row["tenant"], row["model"], row["operation"], minute] += row["cost_micro_usd"]
    return costs


def _deltas(budgets, costs):
    """({(budget id, revision, period start): micro-dollars}, {same key: Period}).

    The costs are summed per period of each (period kind, zone) the tenant's
    budgets use, then per filter a budget has (model, operation, both,
    neither), each sum worked out once and shared by the budgets that ask
    for it: twenty budgets of fifty tenants, and a batch spread over a day,
    take a few milliseconds so."""
    by_tenant = defaultdict(list)
    for (tenant, model, operation, minute), cost in costs.items():
        by_tenant[tenant].append((minute, model, operation, cost))
    for entries in by_tenant.values():
        entries.sort()  # by minute: `_Calendar.summed` walks its periods forward
    calendars = _Calendars()
    by_period = {}  # (tenant, kind, tz) -> {(model, operation, period start): cost}
    matching = {}  # (tenant, kind, tz, model filter, operation filter) -> {period start: cost}
    deltas, period_of = {}, {}
    for budget in budgets:
        view = (budget.tenant_id, budget.period, budget.tz, budget.model, budget.operation)
        calendar = calendars[view[1:3]]
        kept = matching.get(view)
        if kept is None:
            kind = view[:3]
            if kind not in by_period:
                by_period[kind] = calendar.summed(by_tenant.get(budget.tenant_id, ()))
            kept = matching[view] = _matching(by_period[kind], budget.model, budget.operation)
        for start, cost in kept.items():
            key = (budget.id, budget.revision, start)
            deltas[key], period_of[key] = cost, calendar.periods[start]
    return deltas, period_of


def _matching(sums, model, operation):
    """{period start: cost} of the (model, operation, start) sums a budget's filters keep."""
    kept = defaultdict(int)
    for (call_model, call_operation, start), cost in sums.items():
        if (model is None or model == call_model) and (operation is None or operation == call_operation):
            kept[start] += cost
    return kept


class _Calendar:
    """The periods of one kind and zone that a batch's minutes fall in, each found once."""

    def __init__(self, kind, tz):
        self.kind, self.tz = kind, tz
        self.periods = {}  # start -> Period

    def summed(self, entries):
        """{(model, operation, period start): cost} of a tenant's (minute,
        model, operation, cost) entries, sorted by minute: a period serves
        every minute before its end, and the next one is looked up only then."""
        sums = defaultdict(int)
        period = None
        for minute, model, operation, cost in entries:
            if period is None or minute >= period.end:
                period = self._containing(minute)
            sums[model, operation, period.start] += cost
        return sums

    def _containing(self, minute):
        for period in self.periods.values():
            if period.start <= minute < period.end:
                return period
        period = periods.containing(minute, self.kind, self.tz)
        self.periods[period.start] = period
        return period


class _Calendars(dict):
    def __missing__(self, key):
        self[key] = calendar = _Calendar(*key)
        return calendar


def _publish(due):
    """Claim the `due` thresholds, (budget, Period, threshold, spent) each,
    and publish those that no transaction claimed before: one statement
    claims them all, three publish them (a backfilled batch may cross
    dozens at once)."""
    if not due:
        return
    claimed = spend.claim_alerts([(budget.id, budget.revision, period.start, str(threshold))
                                  for budget, period, threshold, _ in due])
    outbox.publish_all(EVENT, [(budget.tenant_id, {
        "budget_id": budget.id,
        "budget_name": budget.name,
        "tenant_id": budget.tenant_id,
        "threshold": spending.as_number(threshold),
        "amount_usd": str(micros_to_usd(budget.amount_micro_usd)),
        "spent_usd": str(micros_to_usd(spent)),
        "period_start": period.local(period.start),
        "period_end": period.local(period.end),
    }) for budget, period, threshold, spent in due
        if (budget.id, budget.revision, period.start, str(threshold)) in claimed])
