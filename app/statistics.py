"""The meaning of a usage-statistics answer, in one place.

The repository hands over plain aggregates (counts, sums, minima, maxima and
the values found at a few ranks); this module turns them into the answer:

- window: `from` inclusive, `to` exclusive (`Window`; either bound may be open);
- `total_calls` and `failed_calls` count every record; cost, durations and
  tokens are taken over `ok` records only;
- percentiles interpolate linearly between the two closest ranks, like
  PostgreSQL's `percentile_cont` and NumPy's default: the p-th percentile of n
  sorted values v[0..n-1] is v[k] + (v[k+1] - v[k]) * f where
  k + f = (n - 1) * p / 100. PostgreSQL computes them with `percentile_cont`;
  SQLite, which has none, hands over the values at ranks k and k + 1 and
  `percentile` interpolates exactly. The values are integers and f a whole
  number of hundredths, so every percentile is an exact multiple of 0.01:
  rounding to 2 decimals removes `percentile_cont`'s floating-point noise and
  makes both engines give identical numbers;
- `by_operation` is ordered by cost descending, then operation ascending;
- an empty window gives zeros and `by_operation: []`.
"""
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction

from .models import micros_to_usd

PERCENTILES = (5, 95)
METRICS = ("call_duration", "input_tokens", "output_tokens")


@dataclass(frozen=True)
class Window:
    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive


def percentile_ranks(n, pct):
    """Zero-based ranks whose values the pct-th percentile of n values needs.

    The repository's SQL selects exactly these ranks: (n - 1) * pct / 100 in
    integer division, and the next one.
    """
    low = (n - 1) * pct // 100
    return low, low + 1


def percentile(n, values_by_rank, pct):
    """The pct-th percentile of n values, from the values at percentile_ranks."""
    low, high = percentile_ranks(n, pct)
    fraction = Fraction((n - 1) * pct % 100, 100)
    value = Fraction(values_by_rank[low])
    if fraction:
        value += (values_by_rank[high] - values_by_rank[low]) * fraction
    return float(value)


def percentiles_from_ranks(n, values_by_rank):
    return {pct: percentile(n, values_by_rank, pct) for pct in PERCENTILES}


@dataclass
class OperationTotals:
    """Per-operation aggregates: counts over all records, the rest over `ok` ones."""

    operation: str
    total_calls: int = 0
    failed_calls: int = 0
    cost_micro_usd: int = 0
    input_tokens_total: int = 0
    output_tokens_total: int = 0

    def add(self, other):
        self.total_calls += other.total_calls
        self.failed_calls += other.failed_calls
        self.cost_micro_usd += other.cost_micro_usd
        self.input_tokens_total += other.input_tokens_total
        self.output_tokens_total += other.output_tokens_total


@dataclass
class MetricTotals:
    """Aggregates of one metric over `ok` records, and its percentiles {pct: value}."""

    count: int = 0
    total: int = 0
    minimum: int | None = None
    maximum: int | None = None
    percentiles: dict = field(default_factory=dict)

    def add(self, other):
        """Merge another group's totals (percentiles are not mergeable; callers set them)."""
        self.count += other.count
        self.total += other.total
        for attr, pick in (("minimum", min), ("maximum", max)):
            mine, theirs = getattr(self, attr), getattr(other, attr)
            values = [v for v in (mine, theirs) if v is not None]
            setattr(self, attr, pick(values) if values else None)

    def summary(self, with_total):
        if self.count == 0:
            summary = {"avg": 0.0, "min": 0, "max": 0, **{f"p{p}": 0.0 for p in PERCENTILES}}
        else:
            summary = {
                "avg": float(Fraction(self.total, self.count)),
                "min": self.minimum,
                "max": self.maximum,
                **{f"p{p}": round(self.percentiles[p], 2) for p in PERCENTILES},
            }
        if with_total:
            summary["total"] = self.total
        return summary


def usage_stats(tenant_id, operations, metrics):
    """The statistics object of one tenant (or of everyone, with tenant_id None).

    `operations`: iterable of OperationTotals; `metrics`: {metric name: MetricTotals}.
    """
    operations = sorted(operations, key=lambda o: (-o.cost_micro_usd, o.operation))
    empty = MetricTotals()
    return {
        "tenant_id": tenant_id,
        "total_calls": sum(o.total_calls for o in operations),
        "failed_calls": sum(o.failed_calls for o in operations),
        "total_cost_usd": micros_to_usd(sum(o.cost_micro_usd for o in operations)),
        "call_duration": metrics.get("call_duration", empty).summary(with_total=False),
        "input_tokens": metrics.get("input_tokens", empty).summary(with_total=True),
        "output_tokens": metrics.get("output_tokens", empty).summary(with_total=True),
        "by_operation": [
            {
                "operation": o.operation,
                "total_calls": o.total_calls,
                "failed_calls": o.failed_calls,
                "cost_usd": micros_to_usd(o.cost_micro_usd),
                "input_tokens_total": o.input_tokens_total,
                "output_tokens_total": o.output_tokens_total,
            }
            for o in operations
        ],
    }
