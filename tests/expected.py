"""Expected statistics computed independently of the service's code.

Plain Python over the records a test inserted: filtering, sums with Decimal,
and percentiles with the standard library's `statistics.quantiles`
(method="inclusive" is the linear interpolation of NumPy's default).
"""
import statistics
from decimal import Decimal


def _percentiles(values):
    if len(values) == 1:
        return values[0], values[0]
    cuts = statistics.quantiles(values, n=20, method="inclusive")
    return cuts[0], cuts[18]  # 5th and 95th


def _distribution(values, with_total):
    if not values:
        result = {"avg": 0, "min": 0, "max": 0, "p5": 0, "p95": 0}
    else:
        p5, p95 = _percentiles(sorted(values))
        result = {"avg": sum(values) / len(values), "min": min(values), "max": max(values),
                  "p5": p5, "p95": p95}
    if with_total:
        result["total"] = sum(values)
    return result


def in_window(record, start, end):
    return (start is None or record["timestamp"] >= start) and (end is None or record["timestamp"] < end)


def expected_stats(records, tenant_id, start=None, end=None):
    """Statistics of `tenant_id` (None: every tenant) over records in [start, end)."""
    chosen = [r for r in records if in_window(r, start, end)
              and (tenant_id is None or r["tenant_id"] == tenant_id)]
    ok = [r for r in chosen if r["status"] == "ok"]
    operations = {}
    for r in chosen:
        op = operations.setdefault(r["operation"], {
            "operation": r["operation"], "total_calls": 0, "failed_calls": 0,
            "cost_usd": Decimal(0), "input_tokens_total": 0, "output_tokens_total": 0})
        op["total_calls"] += 1
        if r["status"] == "error":
            op["failed_calls"] += 1
        else:
            op["cost_usd"] += Decimal(str(r["cost_usd"]))
            op["input_tokens_total"] += r["input_tokens"]
            op["output_tokens_total"] += r["output_tokens"]
    return {
        "tenant_id": tenant_id,
        "total_calls": len(chosen),
        "failed_calls": sum(1 for r in chosen if r["status"] == "error"),
        "total_cost_usd": sum((Decimal(str(r["cost_usd"])) for r in ok), Decimal(0)),
        "call_duration": _distribution([r["call_duration_ms"] for r in ok], with_total=False),
        "input_tokens": _distribution([r["input_tokens"] for r in ok], with_total=True),
        "output_tokens": _distribution([r["output_tokens"] for r in ok], with_total=True),
        "by_operation": sorted(operations.values(), key=lambda o: (-o["cost_usd"], o["operation"])),
    }


def assert_stats_equal(actual, expected):
    """Exact for counts and money (parsed as Decimal), 1e-9 relative for avg/percentiles."""
    import pytest

    for key in ("tenant_id", "total_calls", "failed_calls", "total_cost_usd", "by_operation"):
        assert actual[key] == expected[key], key
    for metric in ("call_duration", "input_tokens", "output_tokens"):
        for stat, value in expected[metric].items():
            assert float(actual[metric][stat]) == pytest.approx(value, rel=1e-9, abs=1e-9), (metric, stat)
