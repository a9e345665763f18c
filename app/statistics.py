"""The meaning of a usage-statistics answer, in one place.

The repository hands over plain aggregates per group of records (counts,
sums, minima, maxima and the values found at a few ranks); this module turns
them into the answer:

- window: `from` inclusive, `to` exclusive (`Window`; either bound may be
  open). The series routes cut it into calendar buckets (`app/buckets.py`);
- `total_calls` and `failed_calls` count every record; cost, durations and
  tokens are taken over `ok` records only;
- percentiles (p5, p50, p95, p99) interpolate linearly between the two
  closest ranks, like PostgreSQL's `percentile_cont` and NumPy's default:
  the p-th percentile of n sorted values v[0..n-1] is v[k] + (v[k+1] - v[k]) * f
  where k + f = (n - 1) * p / 100. PostgreSQL computes them with
  `percentile_cont`; on SQLite, which has none, the repository sorts each
  group's values and `percentile` interpolates exactly between ranks k and k + 1. The values are integers
  and f a whole number of hundredths, so every percentile is an exact
  multiple of 0.01: rounding to 2 decimals removes `percentile_cont`'s
  floating-point noise and makes both engines give identical numbers;
- `by_operation` and `by_model` are ordered by cost descending, then name;
- an empty window gives zeros and empty breakdowns;
- a series group holds the numbers alone (no tenant_id, no breakdowns);
  groups are sorted by their key values, a null error_class first.
"""
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction

from .models import micros_to_usd

PERCENTILES = (5, 50, 95, 99)
METRICS = ("call_duration", "input_tokens", "output_tokens")
# What series may be grouped by and filtered on (the all-tenants route adds tenant_id).
DIMENSIONS = ("operation", "model", "status", "error_class")
# The breakdown lists of a statistics object: by_operation, by_model.
BREAKDOWNS = ("operation", "model")


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
    """The pct-th percentile of n values, from the values at percentile_ranks.

    In hundredths it is an exact integer, v[k] * 100 + (v[k+1] - v[k]) * f100;
    one true division then rounds it correctly to a float.
    """
    low, high = percentile_ranks(n, pct)
    hundredths = (n - 1) * pct % 100
    value = values_by_rank[low] * 100
    if hundredths:
        value += (values_by_rank[high] - values_by_rank[low]) * hundredths
    return value / 100


def percentiles_from_ranks(n, values_by_rank):
    return {pct: percentile(n, values_by_rank, pct) for pct in PERCENTILES}


@dataclass
class Totals:
    """Mergeable aggregates of a group: counts over all records, the rest over `ok` ones."""

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


@dataclass
class Cell:
    """Everything the answer needs about one group of records."""

    totals: Totals = field(default_factory=Totals)
    metrics: dict = field(default_factory=lambda: {name: MetricTotals() for name in METRICS})

    def add(self, other):
        self.totals.add(other.totals)
        for name in METRICS:
            self.metrics[name].add(other.metrics[name])


def numbers(cell):
    """The numbers of a statistics object (all a series group holds)."""
    totals, metrics = cell.totals, cell.metrics
    return {
        "total_calls": totals.total_calls,
        "failed_calls": totals.failed_calls,
        "total_cost_usd": micros_to_usd(totals.cost_micro_usd),
        "call_duration": metrics["call_duration"].summary(with_total=False),
        "input_tokens": metrics["input_tokens"].summary(with_total=True),
        "output_tokens": metrics["output_tokens"].summary(with_total=True),
    }


def breakdown(dimension, totals_by_value):
    """`by_<dimension>`: one entry per value, by cost descending, then value."""
    ordered = sorted(totals_by_value.items(), key=lambda item: (-item[1].cost_micro_usd, item[0]))
    return [
        {
            dimension: value,
            "total_calls": t.total_calls,
            "failed_calls": t.failed_calls,
            "cost_usd": micros_to_usd(t.cost_micro_usd),
            "input_tokens_total": t.input_tokens_total,
            "output_tokens_total": t.output_tokens_total,
        }
        for value, t in ordered
    ]


def usage_stats(tenant_id, cell, breakdowns):
    """The statistics object of one tenant (or of everyone, with tenant_id None).

    `breakdowns`: {dimension of BREAKDOWNS: {value: Totals}}.
    """
    return {
        "tenant_id": tenant_id,
        **numbers(cell),
        **{f"by_{d}": breakdown(d, breakdowns.get(d, {})) for d in BREAKDOWNS},
    }


def group_order(key):
    """Sort key of a series group's key values: nulls first, then by value."""
    return [(value is not None, value or "") for value in key]


def series_groups(group_by, cells):
    """A bucket's groups from {key tuple: Cell}: one zero group when ungrouped."""
    if not group_by:
        return [numbers(cells[()] if () in cells else Cell())]
    return [{**dict(zip(group_by, key)), **numbers(cells[key])}
            for key in sorted(cells, key=group_order)]
