"""Expected statistics computed independently of the service's code.

Plain Python over the records a test inserted: filtering, sums with Decimal,
and percentiles with the standard library's `statistics.quantiles`
(method="inclusive" is the linear interpolation of NumPy's default).
"""
import statistics
from decimal import Decimal


PERCENTILES = (5, 50, 95, 99)


def _percentiles(values):
    if len(values) == 1:
        return {f"p{p}": values[0] for p in PERCENTILES}
    cuts = statistics.quantiles(values, n=100, method="inclusive")  # cuts[k-1] is the k-th
    return {f"p{p}": cuts[p - 1] for p in PERCENTILES}


def _distribution(values, with_total):
    if not values:
        result = {"avg": 0, "min": 0, "max": 0, **{f"p{p}": 0 for p in PERCENTILES}}
    else:
        result = {"avg": sum(values) / len(values), "min": min(values), "max": max(values),
                  **_percentiles(sorted(values))}
    if with_total:
        result["total"] = sum(values)
    return result


def _breakdown(records, dimension):
    """Totals per value of `dimension`, sorted by cost descending, then value."""
    groups = {}
    for r in records:
        group = groups.setdefault(r[dimension], {
            dimension: r[dimension], "total_calls": 0, "failed_calls": 0,
            "cost_usd": Decimal(0), "input_tokens_total": 0, "output_tokens_total": 0})
        group["total_calls"] += 1
        if r["status"] == "error":
            group["failed_calls"] += 1
        else:
            group["cost_usd"] += Decimal(str(r["cost_usd"]))
            group["input_tokens_total"] += r["input_tokens"]
            group["output_tokens_total"] += r["output_tokens"]
    return sorted(groups.values(), key=lambda g: (-g["cost_usd"], g[dimension]))


def in_window(record, start, end):
    return (start is None or record["timestamp"] >= start) and (end is None or record["timestamp"] < end)


def group_stats(chosen):
    """The statistics of a set of records, without tenant_id and breakdowns
    (what a series group holds)."""
    ok = [r for r in chosen if r["status"] == "ok"]
    return {
        "total_calls": len(chosen),
        "failed_calls": sum(1 for r in chosen if r["status"] == "error"),
        "total_cost_usd": sum((Decimal(str(r["cost_usd"])) for r in ok), Decimal(0)),
        "call_duration": _distribution([r["call_duration_ms"] for r in ok], with_total=False),
        "input_tokens": _distribution([r["input_tokens"] for r in ok], with_total=True),
        "output_tokens": _distribution([r["output_tokens"] for r in ok], with_total=True),
    }


def expected_stats(records, tenant_id, start=None, end=None):
    """Statistics of `tenant_id` (None: every tenant) over records in [start, end)."""
    chosen = [r for r in records if in_window(r, start, end)
              and (tenant_id is None or r["tenant_id"] == tenant_id)]
    return {
        "tenant_id": tenant_id,
        **group_stats(chosen),
        "by_operation": _breakdown(chosen, "operation"),
        "by_model": _breakdown(chosen, "model"),
    }


def assert_stats_equal(actual, expected):
    """Exact for counts and money (parsed as Decimal), 1e-9 relative for avg/percentiles."""
    import pytest

    for key in ("tenant_id", "total_calls", "failed_calls", "total_cost_usd", "by_operation", "by_model"):
        if key in expected:
            assert actual[key] == expected[key], key
    for metric in ("call_duration", "input_tokens", "output_tokens"):
        for stat, value in expected[metric].items():
            assert float(actual[metric][stat]) == pytest.approx(value, rel=1e-9, abs=1e-9), (metric, stat)
