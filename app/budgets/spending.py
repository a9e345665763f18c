"""What a budget's numbers mean, in one place.

- `spent_usd`: the cost of the tenant's ok calls whose timestamp lies in the
  current period (and match the budget's model and operation, where set),
  exactly as `/v1/usage` sums it for that window.
- `remaining_usd`: amount − spent, never below zero (`percent_used` shows
  how far past the amount the spend went).
- `percent_used`: spent / amount × 100, rounded half-even to 2 decimals.
- `thresholds_crossed`: the budget's thresholds t with spent ≥ t% of the
  amount, compared exactly (in micro-dollars, never rounded): what the
  alerts fire on.
- `projected_usd`: the spend so far extrapolated linearly over the whole
  period: spent × period length / time elapsed, rounded half-even to 6
  decimals; the spent itself in the period's first minute (too little to
  extrapolate from) and once it is over.
- The check: a budget with `enforce` applies to a prospective call unless
  it names a model or operation the call does not have (a budget for one
  model governs only calls that say they use it); the call is allowed while
  every applicable budget has spent less than its amount.
"""
import datetime as dt
import functools
import json
import math
from decimal import ROUND_HALF_EVEN, Decimal

from ..models import micros_to_usd
from ..repository import spend
from . import periods

HUNDREDTH = Decimal("0.01")
MICRO = Decimal("0.000001")
TOO_EARLY_TO_PROJECT = dt.timedelta(minutes=1)


def thresholds_of(budget):
    """The budget's thresholds as Decimals, ascending."""
    return list(_parsed_thresholds(budget.thresholds_text))


@functools.lru_cache(maxsize=1024)
def _parsed_thresholds(text):
    """A thresholds column's values; budgets share a few texts ("[80, 100]"), and a
    batch reads a thousand budgets' (an immutable value's cache, not state)."""
    return tuple(Decimal(value) for value in json.loads(text))


def as_number(threshold):
    """A threshold (a Decimal, or its text) as JSON shows it: 80, or 12.5."""
    value = Decimal(threshold)
    return int(value) if value == value.to_integral_value() else float(value)


def threshold_amounts(budget):
    """[(threshold, micro-dollars that reach it)]: spent ≥ t% of the amount,
    compared exactly (spent × 100 ≥ t × amount, spent a whole number of
    micro-dollars), never through a rounded percentage."""
    return _amounts(budget.thresholds_text, budget.amount_micro_usd)


@functools.lru_cache(maxsize=4096)
def _amounts(thresholds_text, amount):
    """A batch works out a thousand budgets' amounts: each once (an immutable value's cache)."""
    return tuple((t, math.ceil(t * amount / 100)) for t in _parsed_thresholds(thresholds_text))


def current_period(budget, now):
    return periods.containing(now, budget.period, budget.tz)


def window(budget, period):
    """(tenant, start, end, model, operation): the calls the budget counts in `period`."""
    return budget.tenant_id, period.start, period.end, budget.model, budget.operation


def spent_in(budget, period):
    """Micro-dollars the budget counts in `period` (an exact sum of calls)."""
    return spend.spent(*window(budget, period))


def reached_between(amounts, before, after):
    """The thresholds of `amounts` (threshold_amounts) that `after` reaches and
    `before` did not (None: not known, every one `after` reaches)."""
    return [t for t, amount in amounts if after >= amount and (before is None or before < amount)]


def status(budget, now):
    """The budget's current period and its numbers, as the API shows them."""
    period = current_period(budget, now)
    spent = spent_in(budget, period)
    amount = budget.amount_micro_usd
    percent = (Decimal(spent) * 100 / amount).quantize(HUNDREDTH, ROUND_HALF_EVEN)
    return {
        "period_start": period.local(period.start),
        "period_end": period.local(period.end),
        "spent_usd": micros_to_usd(spent),
        "remaining_usd": micros_to_usd(max(amount - spent, 0)),
        "percent_used": percent,
        "thresholds_crossed": reached_between(threshold_amounts(budget), None, spent),
        "projected_usd": _projected(spent, period, now),
    }


def _projected(spent_micro, period, now):
    elapsed = now - period.start
    if elapsed < TOO_EARLY_TO_PROJECT or now >= period.end:
        return micros_to_usd(spent_micro)
    share = Decimal(elapsed / dt.timedelta(microseconds=1)) / Decimal((period.end - period.start)
                                                                     / dt.timedelta(microseconds=1))
    return (Decimal(spent_micro) / share / 1_000_000).quantize(MICRO, ROUND_HALF_EVEN)


def applies(budget, model, operation):
    """Whether an enforced budget governs a call of `model` and `operation` (None: not said)."""
    return (budget.enforce and (budget.model is None or budget.model == model)
            and (budget.operation is None or budget.operation == operation))
