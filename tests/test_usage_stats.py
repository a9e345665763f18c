"""GET /v1/usage and /v1/usage/all against an independent computation."""
import datetime as dt
import json
import logging
from decimal import Decimal

import pytest

from conftest import auth
from data import UTC, random_records, record, seeded, store
from expected import assert_stats_equal, expected_stats

FROM = dt.datetime(2026, 11, 1, tzinfo=UTC)
TO = dt.datetime(2026, 11, 8, tzinfo=UTC)


def get(client, path, key, **params):
    response = client.get(path, headers=auth(key), query_string=params)
    return response.status_code, json.loads(response.data, parse_float=Decimal)


def iso(moment):
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def dataset(app, keys):
    """Three tenants, records around the window, with boundary records exactly
    at FROM (inside) and TO (outside), error records, and a tenant ('idle')
    whose only records lie outside the window."""
    keys.tenant("ops", allows_superusers=True)
    for tenant_id in ("acme", "globex", "idle"):
        keys.tenant(tenant_id)
    rng = seeded(20261127)
    records = random_records(rng, ["acme", "globex"], 300, FROM - dt.timedelta(days=3),
                             TO + dt.timedelta(days=3))
    records += [
        record("acme", FROM, operation="summarize", cost="0.000001", duration=7, input_tokens=1),
        record("acme", TO, operation="summarize", cost="5", duration=99_999),
        record("acme", TO - dt.timedelta(microseconds=1), operation="analyze", cost="0.3"),
        record("globex", FROM, status="error", cost="0", duration=1),
        record("idle", FROM - dt.timedelta(microseconds=1)),
        record("idle", TO),
    ]
    store(app, records)
    return {
        "records": records,
        "tenant_key": keys.key("acme"),
        "super_key": keys.key("ops", superuser=True),
    }


WINDOWS = [(None, None), (FROM, None), (None, TO), (FROM, TO)]


@pytest.mark.parametrize("start,end", WINDOWS)
def test_tenant_usage_matches_independent_computation(client, dataset, start, end):
    params = {k: iso(v) for k, v in (("from", start), ("to", end)) if v}
    status, body = get(client, "/v1/usage", dataset["tenant_key"], **params)
    assert status == 200
    assert_stats_equal(body, expected_stats(dataset["records"], "acme", start, end))
    assert body["from"] == (start.isoformat() if start else None)
    assert body["to"] == (end.isoformat() if end else None)


@pytest.mark.parametrize("start,end", WINDOWS)
def test_all_usage_matches_independent_computation(client, dataset, start, end):
    params = {k: iso(v) for k, v in (("from", start), ("to", end)) if v}
    status, body = get(client, "/v1/usage/all", dataset["super_key"], **params)
    assert status == 200
    records = dataset["records"]
    active = sorted({r["tenant_id"] for r in records
                     if (start is None or r["timestamp"] >= start) and (end is None or r["timestamp"] < end)})
    assert [t["tenant_id"] for t in body["tenants"]] == active
    for tenant in body["tenants"]:
        assert_stats_equal(tenant, expected_stats(records, tenant["tenant_id"], start, end))
    assert_stats_equal(body["total"], expected_stats(records, None, start, end))


def test_large_groups_match_independent_computation(client, keys, app):
    """Groups of thousands of ok records (SQLite picks only the ranks it needs
    from large sorted arrays, and converts small ones whole)."""
    keys.tenant("ops", allows_superusers=True)
    for tenant_id in ("acme", "globex"):
        keys.tenant(tenant_id)
    records = random_records(seeded(20261128), ["acme", "globex"], 3000, FROM, TO)
    store(app, records)
    _, body = get(client, "/v1/usage", keys.key("acme"))
    assert_stats_equal(body, expected_stats(records, "acme"))
    _, body = get(client, "/v1/usage/all", keys.key("ops", superuser=True))
    for tenant in body["tenants"]:
        assert_stats_equal(tenant, expected_stats(records, tenant["tenant_id"]))
    assert_stats_equal(body["total"], expected_stats(records, None))


def test_window_boundaries(client, keys, app):
    keys.tenant("acme")
    key = keys.key("acme")
    store(app, [
        record("acme", FROM, cost="1", duration=10),
        record("acme", TO, cost="2", duration=20),
        record("acme", FROM - dt.timedelta(microseconds=1), cost="4", duration=40),
    ])
    _, body = get(client, "/v1/usage", key, **{"from": iso(FROM), "to": iso(TO)})
    assert body["total_calls"] == 1
    assert body["total_cost_usd"] == Decimal("1")
    assert body["call_duration"] == {"avg": 10, "min": 10, "max": 10, "p5": 10, "p50": 10, "p95": 10,
                                     "p99": 10}


def test_empty_window_gives_zeros(client, dataset):
    status, body = get(client, "/v1/usage", dataset["tenant_key"],
                       **{"from": "2030-01-01T00:00:00Z", "to": "2030-02-01T00:00:00Z"})
    assert status == 200
    zeros = {"avg": 0, "min": 0, "max": 0, "p5": 0, "p50": 0, "p95": 0, "p99": 0}
    assert body["total_calls"] == 0 and body["failed_calls"] == 0
    assert body["total_cost_usd"] == 0
    assert body["call_duration"] == zeros
    assert body["input_tokens"] == {**zeros, "total": 0}
    assert body["by_operation"] == [] and body["by_model"] == []
    status, body = get(client, "/v1/usage/all", dataset["super_key"],
                       **{"from": "2030-01-01T00:00:00Z", "to": "2030-02-01T00:00:00Z"})
    assert body["tenants"] == [] and body["total"]["tenant_id"] is None
    assert body["total"]["total_calls"] == 0 and body["total"]["by_operation"] == []


def test_only_error_records_count_calls_but_not_cost_or_metrics(client, keys, app):
    keys.tenant("acme")
    key = keys.key("acme")
    store(app, [record("acme", FROM, status="error", cost="0.5", duration=30, input_tokens=7)])
    _, body = get(client, "/v1/usage", key)
    assert (body["total_calls"], body["failed_calls"], body["total_cost_usd"]) == (1, 1, 0)
    assert body["input_tokens"]["total"] == 0 and body["call_duration"]["max"] == 0
    assert body["by_operation"] == [{"operation": "analyze", "total_calls": 1, "failed_calls": 1,
                                     "cost_usd": 0, "input_tokens_total": 0, "output_tokens_total": 0}]
    assert body["by_model"] == [{"model": "gpt-4o-mini", "total_calls": 1, "failed_calls": 1,
                                 "cost_usd": 0, "input_tokens_total": 0, "output_tokens_total": 0}]


def test_money_is_exact_where_floats_drift(client, keys, app):
    keys.tenant("acme")
    key = keys.key("acme")
    costs = ["0.1", "0.2"] + ["0.000001"] * 7 + ["123456.789012"]
    store(app, [record("acme", FROM, cost=c) for c in costs])
    response = client.get("/v1/usage", headers=auth(key))
    body = json.loads(response.data, parse_float=Decimal)
    assert body["total_cost_usd"] == Decimal("123457.089019")
    # The JSON text carries the exact digits, not a float rendering.
    assert b'"total_cost_usd":123457.089019' in response.data
    assert 0.1 + 0.2 != 0.3  # why this test exists


def test_by_operation_sorted_by_cost_then_name(client, keys, app):
    keys.tenant("acme")
    key = keys.key("acme")
    store(app, [
        record("acme", FROM, operation="summarize", cost="1"),
        record("acme", FROM, operation="analyze", cost="1"),
        record("acme", FROM, operation="assign_codes", cost="2"),
        record("acme", FROM, operation="zeta", cost="0.5"),
        record("acme", FROM, operation="zeta", cost="0.5"),
    ])
    _, body = get(client, "/v1/usage", key)
    assert [o["operation"] for o in body["by_operation"]] == ["assign_codes", "analyze", "summarize", "zeta"]


def test_by_model_sorted_by_cost_then_name(client, keys, app):
    keys.tenant("acme")
    key = keys.key("acme")
    store(app, [
        record("acme", FROM, model="gpt-4o", cost="1"),
        record("acme", FROM, model="claude-haiku", cost="0.4", operation="summarize"),
        record("acme", FROM, model="claude-haiku", cost="0.6"),
        record("acme", FROM, model="zz-free", cost="0"),
        record("acme", FROM, model="big", cost="2", status="error"),
    ])
    _, body = get(client, "/v1/usage", key)
    assert [(m["model"], m["cost_usd"], m["total_calls"]) for m in body["by_model"]] == [
        ("claude-haiku", 1, 2), ("gpt-4o", 1, 1), ("big", 0, 1), ("zz-free", 0, 1)]


def test_percentiles_interpolate_between_closest_ranks(client, keys, app):
    keys.tenant("acme")
    key = keys.key("acme")
    # p5 at rank 0.2: 12; p50 at rank 2: 30; p95 at rank 3.8: 40 + 0.8 * 960 = 808;
    # p99 at rank 3.96: 40 + 0.96 * 960 = 961.6
    durations = [10, 20, 30, 40, 1000]
    store(app, [record("acme", FROM, duration=d) for d in durations])
    _, body = get(client, "/v1/usage", key)
    assert body["call_duration"] == {"avg": 220, "min": 10, "max": 1000, "p5": 12, "p50": 30, "p95": 808,
                                     "p99": Decimal("961.6")}


@pytest.mark.parametrize("params,field", [
    ({"from": "2026-11-01T00:00:00"}, "from"),
    ({"to": "2026-11-01"}, "to"),
    ({"from": "yesterday"}, "from"),
    ({"from": "2026-11-02T00:00:00Z", "to": "2026-11-01T00:00:00Z"}, "to"),
    ({"from": "2026-11-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"}, "to"),
])
def test_invalid_window_is_422_naming_the_parameter(client, dataset, params, field):
    for path, key in (("/v1/usage", dataset["tenant_key"]), ("/v1/usage/all", dataset["super_key"])):
        status, body = get(client, path, key, **params)
        assert status == 422
        assert list(body["errors"]["query"]) == [field]


def test_window_with_offset_is_echoed_in_utc(client, dataset):
    status, body = get(client, "/v1/usage", dataset["tenant_key"],
                       **{"from": "2026-11-01T02:00:00+02:00", "to": "2026-11-07T19:00:00-05:00"})
    assert status == 200
    assert (body["from"], body["to"]) == ("2026-11-01T00:00:00+00:00", "2026-11-08T00:00:00+00:00")
    assert_stats_equal(body, expected_stats(dataset["records"], "acme", FROM, TO))


class StatementCounter(logging.Handler):
    """Counts the SQL statements Peewee executes (it logs each at DEBUG)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record):
        if record.name == "peewee":  # not its children, such as peewee.pool
            self.count += 1


def count_statements(client, path, key, **params):
    logger = logging.getLogger("peewee")
    counter = StatementCounter()
    logger.addHandler(counter)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        status, body = get(client, path, key, **params)
    finally:
        logger.removeHandler(counter)
        logger.setLevel(level)
    assert status == 200
    return counter.count, body


def test_all_usage_runs_a_fixed_number_of_statements(app, client, keys):
    keys.tenant("ops", allows_superusers=True)
    key = keys.key("ops", superuser=True)
    get(client, "/v1/usage/all", key)  # refreshes last_used_at, which then waits a minute
    counts, active = [], set()
    for first, last in ((0, 2), (2, 40)):
        tenants = [keys.tenant(f"t{i:03d}") for i in range(first, last)]
        records = random_records(seeded(last), tenants, len(tenants) * 4, FROM, TO)
        store(app, records)
        active |= {r["tenant_id"] for r in records}
        count, body = count_statements(client, "/v1/usage/all", key)
        assert len(body["tenants"]) == len(active)
        counts.append(count)
    assert len(active) > 30
    assert counts[0] == counts[1]
    # One key lookup, the pruned range (app/retention.py) and two statistics
    # statements (aggregates per tenant, operation and model; percentiles per
    # tenant and overall).
    assert counts[1] == 4


def test_tenant_usage_is_one_statement(app, client, keys):
    """Aggregates per (operation, model) and the tenant's percentiles come
    from one scan of its window, whatever its operations and models."""
    keys.tenant("acme")
    key = keys.key("acme")
    get(client, "/v1/usage", key)  # refreshes last_used_at, which then waits a minute
    store(app, random_records(seeded(21), ["acme"], 300, FROM, TO))
    count, body = count_statements(client, "/v1/usage", key)
    assert len(body["by_operation"]) > 1 and len(body["by_model"]) > 1
    assert count == 3  # the key lookup, the pruned range (app/retention.py), then the statistics


def test_percentiles_are_exact_where_float_interpolation_is_not(client, keys, app):
    keys.tenant("acme")
    key = keys.key("acme")
    # n = 10: p95 sits at rank 9 * 0.95 = 8.55, which binary floating point
    # computes as 8.549999...; the answer is exactly 800 + 0.55 * 100 = 855.
    store(app, [record("acme", FROM, duration=100 * i, input_tokens=3 * i + 1) for i in range(10)])
    _, body = get(client, "/v1/usage", key)
    assert body["call_duration"]["p5"] == Decimal("45") and body["call_duration"]["p95"] == Decimal("855")
    # input tokens 1, 4, ..., 28: p5 = 1 + 0.45 * 3 = 2.35, p95 = 25 + 0.55 * 3 = 26.65
    assert body["input_tokens"]["p5"] == Decimal("2.35") and body["input_tokens"]["p95"] == Decimal("26.65")
