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
  `percentile_cont`; on SQLite, which has none, and for one tenant's usage
  on both engines, the repository sorts each group's values and `percentile`
  interpolates exactly between ranks k and k + 1. The values are integers
  and f a whole number of hundredths, so every percentile is an exact
  multiple of 0.01: rounding to 2 decimals removes `percentile_cont`'s
  floating-point noise and makes both engines give identical numbers;
- `percentiles=approximate` (rollups, `app/rollups.py`): the same
  interpolation, between the estimates of the values at ranks k and k + 1
  that the merged sketches give (`app/sketch.py`). Each estimate is within
  1% of the true value at its rank, and values are non-negative, so the
  interpolated percentile is within 1% of the exact one (where no window
  holds a whole cell, the exact path answers: its percentiles are the
  exact ones). An estimate outside the exact [min, max] is moved to the
  bound (`MetricTotals.set_percentiles`). Every other number is exact
  either way;
- `by_operation` and `by_model` are ordered by cost descending, then name;
- an empty window gives zeros and empty breakdowns;
- an answer that needs raw calls the retention pruned is refused (409),
  never given in part: app/retention.py says which (`refuse_pruned`);
- a series group holds the numbers alone (no tenant_id, no breakdowns);
  groups are sorted by their key values, a null error_class first.
"""
from dataclasses import dataclass, field
from datetime import datetime
from math import nan as NAN

import numpy as np

from .models import micros_to_usd

PERCENTILES = (5, 50, 95, 99)  # numbers_of_rows names their fields
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


def ranks_needed(sizes):
    """The ranks of percentile_ranks for every percentile, for an array of group sizes."""
    return [rank for pct in PERCENTILES for rank in percentile_ranks(sizes, pct)]


def percentiles_from_ranks(n, values_by_rank):
    return {pct: percentile(n, values_by_rank, pct) for pct in PERCENTILES}


def percentiles_of_groups(sizes, values):
    """[percentiles_from_ranks] of many groups at once: `sizes` an int array
    of their sizes, `values` [group x rank] the integer values at the ranks
    of `ranks_needed`, in its order. The same integer arithmetic as
    `percentile` and one true division, so the very same floats."""
    if not len(sizes):
        return []
    columns = []
    for i, pct in enumerate(PERCENTILES):
        low, high = values[:, 2 * i], values[:, 2 * i + 1]
        hundredths = (sizes - 1) * pct % 100
        columns.append((low * 100 + (high - low) * hundredths) / 100)
    return [dict(zip(PERCENTILES, row)) for row in np.column_stack(columns).tolist()]


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


def within(value, low, high):
    """`value` moved within [low, high] (None: no bound, the group has no ok record)."""
    return value if low is None or low <= value <= high else float(min(max(value, low), high))


@dataclass
class MetricTotals:
    """Aggregates of one metric over `ok` records, and its percentiles {pct: value}."""

    count: int = 0
    total: int = 0
    minimum: int | None = None
    maximum: int | None = None
    percentiles: dict = field(default_factory=dict)

    def set_percentiles(self, by_pct):
        """Set the percentiles {pct: value}, each within [minimum, maximum].
        An estimate from sketches may fall outside, by up to 1% (a single
        call of 1,234 ms is in the bin whose value is 1,222); the true value
        never does, so moving it to the bound only brings it closer. Exact
        percentiles are never moved."""
        self.percentiles = {pct: within(value, self.minimum, self.maximum) for pct, value in by_pct.items()}

    def add(self, other):
        """Merge another group's totals (percentiles are not mergeable; callers set them)."""
        self.count += other.count
        self.total += other.total
        if other.minimum is not None and (self.minimum is None or other.minimum < self.minimum):
            self.minimum = other.minimum
        if other.maximum is not None and (self.maximum is None or other.maximum > self.maximum):
            self.maximum = other.maximum


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
    ok_calls = metrics[METRICS[0]].count  # every metric is over the same ok records
    row = [totals.total_calls, totals.failed_calls, ok_calls, totals.cost_micro_usd]
    for name in METRICS:
        row += [metrics[name].total, metrics[name].minimum, metrics[name].maximum]
    for name in METRICS:
        row += [metrics[name].percentiles[pct] if ok_calls else None for pct in PERCENTILES]
    return numbers_of_rows([row], 0)[0]


def numbers_of_estimates(totals, percentiles):
    """[(key, `numbers`)] of many groups (a series by tenant over 90 days has
    4,500) from {key: aggregates} (count, failed count, ok count, ok cost,
    then each metric's sum, minimum and maximum over ok records) and the
    estimated percentiles {key: {metric: {pct: value}}}, each moved within
    its metric's [minimum, maximum] as `MetricTotals.set_percentiles` moves
    it (`within`): no Cell per group."""
    rows = []
    for key, aggregates in totals.items():
        row, estimates, ok_calls = list(aggregates), percentiles.get(key, {}), aggregates[2]
        for m, name in enumerate(METRICS):
            low, high = aggregates[5 + 3 * m], aggregates[6 + 3 * m]
            for pct in PERCENTILES:
                row.append(within(estimates[name][pct], low, high) if ok_calls else None)
        rows.append(row)
    return list(zip(totals, numbers_of_rows(rows, 0)))


# The metrics whose summary includes their total (tokens; a sum of durations means nothing).
WITH_TOTAL = {"call_duration": False, "input_tokens": True, "output_tokens": True}
# Where each metric's numbers are in a row of numbers_of_rows: (name, where
# its total, minimum and maximum are after the key, where its values are
# among the percentiles, whether its summary has its total).
_METRIC_LAYOUT = tuple((name, 4 + 3 * i, len(PERCENTILES) * i, WITH_TOTAL[name])
                       for i, name in enumerate(METRICS))


def numbers_of_rows(rows, width):
    """The numbers of each of many groups straight from its plain
    aggregates, without the Cell they would otherwise fill (a series has
    thousands): for each metric, avg, min, max and the percentiles to 2
    decimals over ok records (zeros without any), and for tokens the total.

    Each row: its key (`width` values); calls, failed calls, ok calls, ok
    cost in micro-USD; the total, minimum and maximum of each of METRICS over
    ok records; then each metric's values at PERCENTILES over ok records
    (None without ok records), as scans.series_rows gives them. All ints but
    the percentiles, rounded all together (`to_hundredths`).

    `total / ok_calls` divides two ints, which Python rounds correctly to
    the nearest float (as float(Fraction(total, ok_calls)) would, at a
    fraction of the cost). The summaries are literal dicts, a third faster
    than built field by field.
    """
    first_percentile = width + 4 + 3 * len(METRICS)
    rounded = to_hundredths([row[first_percentile:] for row in rows])
    layout = [(name, width + first, at, at + len(PERCENTILES), with_total)
              for name, first, at, with_total in _METRIC_LAYOUT]
    result = []
    for row, percentiles in zip(rows, rounded):
        ok_calls = row[width + 2]
        group = {"total_calls": row[width], "failed_calls": row[width + 1],
                 "total_cost_usd": micros_to_usd(row[width + 3])}
        for name, i, at, end, with_total in layout:
            total = row[i] or 0
            if ok_calls:
                p5, p50, p95, p99 = percentiles[at:end]
                summary = {"avg": total / ok_calls, "min": row[i + 1], "max": row[i + 2],
                           "p5": p5, "p50": p50, "p95": p95, "p99": p99}
            else:
                summary = {"avg": 0.0, "min": 0, "max": 0, "p5": 0.0, "p50": 0.0, "p95": 0.0, "p99": 0.0}
            if with_total:
                summary["total"] = total
            group[name] = summary
        result.append(group)
    return result


def to_hundredths(rows):
    """`round(value, 2)` of each value of `rows` (sequences of floats, all
    as long), as lists of floats; None gives NaN.

    Percentiles are exact multiples of 0.01 up to floating-point noise (see
    above). `round(x, 2)` converts x to decimal digits and back, which took
    30 ms for the 26,000 percentiles of a series of 2,161 hours; NumPy's
    rint(x * 100) / 100 takes 2 ms and is the very same float wherever
    x * 100 lies closer than 0.49 to a whole number n: there x's exact
    decimal rounding is n / 100 (x * 100 is off by at most half a unit in
    the last place, under 1e-4 below 2**50), and dividing the whole number n
    by 100 in floating point gives the float nearest to n / 100, as `round`
    does. Python's `round` decides the rest (near-halves, huge values), and
    a few rows, for which NumPy's set-up would cost more than it saves.
    """
    if len(rows) < 16:
        return [[NAN if value is None else round(value, 2) for value in row] for row in rows]
    exact = np.array(rows, dtype=np.float64)
    scaled = exact * 100
    whole = np.rint(scaled)
    result = whole / 100
    with np.errstate(invalid="ignore"):  # inf - inf: undecided, as NaN is
        undecided = ~((np.abs(scaled - whole) < 0.49) & (np.abs(scaled) < 2.0 ** 50))
    for index in zip(*np.nonzero(undecided)):
        result[index] = round(float(exact[index]), 2)
    return result.tolist()


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


def bucket_groups(group_by, numbers_by_key, zero):
    """A bucket's groups from {key tuple: numbers}: without group_by, its one
    group, `zero` (the numbers of no records, which buckets may share) when
    empty; with it, the groups with records, key fields first."""
    if not group_by:
        return [numbers_by_key.get((), zero)]
    return [{**dict(zip(group_by, key)), **numbers_by_key[key]}
            for key in sorted(numbers_by_key, key=group_order)]
