"""GET /v1/usage/series and /v1/usage/all/series.

Bucket boundaries are checked against the zone's calendar as Python's
zoneinfo reads it (local wall time of each boundary, the local date/hour of
every instant); each group's numbers against an independent computation over
the records a test stored; ungrouped buckets against what /v1/usage and
/v1/usage/all answer for the same [start, end).
"""
import datetime as dt
import json
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from conftest import auth
from data import UTC, random_records, record, seeded, store
from expected import assert_stats_equal, group_stats
from test_usage_stats import count_statements

ZONES = ["UTC", "Europe/Berlin", "America/St_Johns", "Asia/Kolkata", "Asia/Kathmandu"]
UNITS = ["hour", "day", "week", "month"]
SPRING = dt.datetime(2026, 3, 29, 1, tzinfo=UTC)  # Europe/Berlin: 02:00 -> 03:00
FALL = dt.datetime(2026, 10, 25, 1, tzinfo=UTC)  # Europe/Berlin: 03:00 -> 02:00
MICRO = dt.timedelta(microseconds=1)
DIMENSIONS = ("operation", "model", "status", "error_class")


def parse(response):
    return json.loads(response.data, parse_float=Decimal)


def utc(text):
    return dt.datetime.fromisoformat(text).astimezone(UTC)


def iso(moment):
    return moment.isoformat()


def local_key(moment, unit, tz):
    """The calendar cell of an instant: a bucket holds exactly one."""
    local = moment.astimezone(tz)
    if unit == "hour":
        return local.date(), local.hour, local.utcoffset()
    if unit == "day":
        return local.date()
    if unit == "week":
        return tuple(local.isocalendar())[:2]
    return local.year, local.month


def check_calendar(buckets, start, end, unit, tz):
    """The buckets tile [start, end), one calendar cell each, boundaries on the clock."""
    starts = [utc(b["start"]) for b in buckets]
    ends = [utc(b["end"]) for b in buckets]
    assert starts[0] == start and ends[-1] == end
    assert starts[1:] == ends[:-1]
    for bucket, first, last in zip(buckets, starts, ends):
        assert first < last
        assert local_key(first, unit, tz) == local_key(last - MICRO, unit, tz), bucket
        for text, moment in ((bucket["start"], first), (bucket["end"], last)):
            assert dt.datetime.fromisoformat(text).utcoffset() == moment.astimezone(tz).utcoffset()
    for previous, boundary in zip(starts, starts[1:]):
        assert local_key(previous, unit, tz) != local_key(boundary, unit, tz)
        local = boundary.astimezone(tz)
        assert (local.minute, local.second, local.microsecond) == (0, 0, 0)
        if unit != "hour":
            assert local.hour == 0
        if unit == "week":
            assert local.weekday() == 0
        if unit == "month":
            assert local.day == 1


def expected_groups(records, bucket_start, bucket_end, group_by):
    chosen = [r for r in records if bucket_start <= r["timestamp"] < bucket_end]
    if not group_by:
        return [group_stats(chosen)]
    groups = {}
    for r in chosen:
        groups.setdefault(tuple(r.get(d) for d in group_by), []).append(r)
    return [
        {**dict(zip(group_by, key)), **group_stats(members)}
        for key, members in sorted(groups.items(),
                                   key=lambda item: [(v is not None, v or "") for v in item[0]])
    ]


def assert_series_equal(body, records, group_by):
    for bucket in body["buckets"]:
        expected = expected_groups(records, utc(bucket["start"]), utc(bucket["end"]), group_by)
        assert len(bucket["groups"]) == len(expected), bucket["start"]
        for actual, wanted in zip(bucket["groups"], expected):
            assert list(actual)[:len(group_by)] == list(group_by)  # key fields first
            for dimension in group_by:
                assert actual[dimension] == wanted[dimension]
            assert_stats_equal(actual, wanted)


def boundary_records():
    """Records exactly on local boundaries of the test zones, and in repeated hours."""
    moments = [
        dt.datetime(2026, 3, 28, 23, tzinfo=UTC),  # Berlin midnight starting the 23-hour day
        dt.datetime(2026, 3, 29, 22, tzinfo=UTC),  # ... and the one ending it
        dt.datetime(2026, 10, 25, 0, 30, tzinfo=UTC),  # Berlin 02:30+02:00 (first 02:30)
        dt.datetime(2026, 10, 25, 1, 30, tzinfo=UTC),  # Berlin 02:30+01:00 (second 02:30)
        dt.datetime(2026, 10, 24, 22, tzinfo=UTC),  # Berlin midnight starting the 25-hour day
        dt.datetime(2026, 3, 28, 18, 30, tzinfo=UTC),  # Kolkata midnight
        dt.datetime(2026, 3, 28, 18, 15, tzinfo=UTC),  # Kathmandu midnight
        dt.datetime(2026, 3, 29, 2, 30, tzinfo=UTC),  # St John's midnight (-02:30, DST)
        dt.datetime(2026, 10, 26, 0, 0, tzinfo=UTC),  # UTC midnight, a Monday
        dt.datetime(2026, 11, 1, 0, 0, tzinfo=UTC),  # UTC month start
    ]
    return [record("acme", m, operation="summarize", cost="0.000001", duration=7) for m in moments] + [
        record("globex", m - MICRO, status="error", error_class="APITimeoutError") for m in moments]


@pytest.fixture
def series_data(app, keys):
    keys.tenant("acme")
    keys.tenant("globex")
    keys.tenant("ops", allows_superusers=True)
    rng = seeded(9)
    records = random_records(rng, ["acme", "globex"], 300, dt.datetime(2026, 2, 20, tzinfo=UTC),
                             dt.datetime(2026, 12, 10, tzinfo=UTC))
    for switch in (SPRING, FALL):  # dense around the DST switches, for the hour buckets
        records += random_records(rng, ["acme", "globex"], 120, switch - dt.timedelta(days=2),
                                  switch + dt.timedelta(days=2))
    records += boundary_records()
    store(app, records)
    return {"records": records, "rng": rng, "acme": keys.key("acme"),
            "admin": keys.key("ops", superuser=True)}


def window(rng, unit, around):
    """A random window around `around`, long enough for several buckets, not on boundaries."""
    days = {"hour": 2, "day": 12, "week": 50, "month": 150}[unit]
    jitter = dt.timedelta(seconds=rng.randrange(86_400), microseconds=rng.randrange(1_000_000))
    start = around - dt.timedelta(days=days) + jitter
    return start, start + dt.timedelta(days=2 * days, seconds=rng.randrange(86_400))


def get_series(client, path, key, **params):
    response = client.get(path, headers=auth(key), query_string=params)
    assert response.status_code == 200, response.data[:500]
    return parse(response)


@pytest.mark.parametrize("zone_name", ZONES)
def test_series_buckets_follow_the_zone_calendar_and_match_the_records(client, series_data, zone_name):
    tz = ZoneInfo(zone_name)
    records = series_data["records"]
    rng = series_data["rng"]
    for unit in UNITS:
        for around in (SPRING, FALL):
            start, end = window(rng, unit, around)
            body = get_series(client, "/v1/usage/series", series_data["acme"],
                              **{"from": iso(start), "to": iso(end), "bucket": unit, "tz": zone_name})
            assert (body["bucket"], body["tz"], body["group_by"]) == (unit, zone_name, [])
            assert (utc(body["from"]), utc(body["to"])) == (start, end)
            check_calendar(body["buckets"], start, end, unit, tz)
            assert_series_equal(body, [r for r in records if r["tenant_id"] == "acme"], ())
            everyone = get_series(client, "/v1/usage/all/series", series_data["admin"],
                                  **{"from": iso(start), "to": iso(end), "bucket": unit, "tz": zone_name})
            assert [(b["start"], b["end"]) for b in everyone["buckets"]] == \
                [(b["start"], b["end"]) for b in body["buckets"]]
            assert_series_equal(everyone, records, ())


def test_dst_days_are_23_and_25_hours_in_berlin(client, series_data):
    body = get_series(client, "/v1/usage/series", series_data["acme"], bucket="day", tz="Europe/Berlin",
                      **{"from": "2026-03-28T00:00:00+01:00", "to": "2026-03-31T00:00:00+02:00"})
    assert [(b["start"], b["end"]) for b in body["buckets"]] == [
        ("2026-03-28T00:00:00+01:00", "2026-03-29T00:00:00+01:00"),
        ("2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00"),
        ("2026-03-30T00:00:00+02:00", "2026-03-31T00:00:00+02:00"),
    ]
    body = get_series(client, "/v1/usage/series", series_data["acme"], bucket="hour", tz="Europe/Berlin",
                      **{"from": "2026-10-25T01:00:00+02:00", "to": "2026-10-25T04:00:00+01:00"})
    assert [b["start"] for b in body["buckets"]] == [
        "2026-10-25T01:00:00+02:00", "2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00",
        "2026-10-25T03:00:00+01:00"]
    # The record at the first 02:30 and the one at the second fall in different hours.
    assert [b["groups"][0]["total_calls"] >= 1 for b in body["buckets"][1:3]] == [True, True]


def test_bucket_numbers_are_what_the_totals_routes_answer(client, series_data):
    """The identity: a bucket's group is /v1/usage (or the all-tenants total) over [start, end)."""
    rng = series_data["rng"]
    for zone_name, unit in (("Asia/Kathmandu", "day"), ("Europe/Berlin", "hour"), ("America/St_Johns", "week")):
        start, end = window(rng, unit, FALL)
        params = {"from": iso(start), "to": iso(end), "bucket": unit, "tz": zone_name}
        mine = get_series(client, "/v1/usage/series", series_data["acme"], **params)
        everyone = get_series(client, "/v1/usage/all/series", series_data["admin"], **params)
        for index in sorted(rng.sample(range(len(mine["buckets"])), 3)):
            bucket = mine["buckets"][index]
            bounds = {"from": bucket["start"], "to": bucket["end"]}
            totals = parse(client.get("/v1/usage", headers=auth(series_data["acme"]), query_string=bounds))
            [group] = bucket["groups"]
            assert group == {k: v for k, v in totals.items()
                             if k not in ("from", "to", "percentiles", "tenant_id", "by_operation", "by_model")}
            grand = parse(client.get("/v1/usage/all", headers=auth(series_data["admin"]),
                                     query_string=bounds))["total"]
            [group] = everyone["buckets"][index]["groups"]
            assert group == {k: v for k, v in grand.items()
                             if k not in ("tenant_id", "by_operation", "by_model")}


@pytest.mark.parametrize("group_by", [("operation",), ("model", "status"), ("status", "error_class"),
                                      ("operation", "model", "status", "error_class")])
def test_group_by_any_dimension(client, series_data, group_by):
    records = [r for r in series_data["records"] if r["tenant_id"] == "acme"]
    start, end = window(series_data["rng"], "week", FALL)
    body = get_series(client, "/v1/usage/series", series_data["acme"], bucket="week", tz="Asia/Kolkata",
                      group_by=",".join(group_by), **{"from": iso(start), "to": iso(end)})
    assert body["group_by"] == list(group_by)
    assert_series_equal(body, records, group_by)
    assert any(len(b["groups"]) > 1 for b in body["buckets"])
    assert all(b["groups"] or not expected_groups(records, utc(b["start"]), utc(b["end"]), group_by)
               for b in body["buckets"])


def test_filters_mean_any_of_and_combine_with_grouping(client, series_data):
    records = [r for r in series_data["records"]
               if r["operation"] in ("analyze", "summarize") and r["model"] == "gpt-4o"]
    start, end = window(series_data["rng"], "month", FALL)
    response = client.get("/v1/usage/all/series", headers=auth(series_data["admin"]), query_string=[
        ("from", iso(start)), ("to", iso(end)), ("bucket", "month"), ("tz", "America/St_Johns"),
        ("operation", "analyze"), ("operation", "summarize"), ("model", "gpt-4o"),
        ("group_by", "tenant_id,operation")])
    assert response.status_code == 200
    assert_series_equal(parse(response), records, ("tenant_id", "operation"))
    only = get_series(client, "/v1/usage/all/series", series_data["admin"], tenant_id="globex",
                      status="error", **{"from": iso(start), "to": iso(end), "bucket": "month"})
    assert_series_equal(only, [r for r in series_data["records"]
                               if r["tenant_id"] == "globex" and r["status"] == "error"], ())


def test_empty_buckets_are_present_with_zeros(client, series_data):
    body = get_series(client, "/v1/usage/series", series_data["acme"], bucket="day",
                      **{"from": "2030-01-01T00:00:00Z", "to": "2030-01-04T00:00:00Z"})
    assert len(body["buckets"]) == 3
    zeros = {"avg": 0, "min": 0, "max": 0, "p5": 0, "p50": 0, "p95": 0, "p99": 0}
    for bucket in body["buckets"]:
        assert bucket["groups"] == [{"total_calls": 0, "failed_calls": 0, "total_cost_usd": 0,
                                     "call_duration": zeros, "input_tokens": {**zeros, "total": 0},
                                     "output_tokens": {**zeros, "total": 0}}]
    grouped = get_series(client, "/v1/usage/series", series_data["acme"], bucket="day", group_by="model",
                         **{"from": "2030-01-01T00:00:00Z", "to": "2030-01-04T00:00:00Z"})
    assert [b["groups"] for b in grouped["buckets"]] == [[], [], []]


def test_default_window_is_the_last_30_days(client, series_data):
    before = dt.datetime.now(UTC)
    body = get_series(client, "/v1/usage/series", series_data["acme"])
    start, end = utc(body["from"]), utc(body["to"])
    assert end - start == dt.timedelta(days=30)
    assert before <= end <= before + dt.timedelta(minutes=2)
    assert (body["bucket"], body["tz"]) == ("day", "UTC")
    assert len(body["buckets"]) in (30, 31)


@pytest.mark.parametrize("params,field", [
    ({"bucket": "fortnight"}, "bucket"),
    ({"tz": "Mars/Olympus_Mons"}, "tz"),
    ({"tz": "../../etc/passwd"}, "tz"),
    ({"group_by": "operation,color"}, "group_by"),
    ({"group_by": "model,model"}, "group_by"),
    ({"group_by": "tenant_id"}, "group_by"),
    ({"tenant_id": "acme"}, "tenant_id"),
    ({"status": "maybe"}, "status"),
    ({"from": "2026-01-01T00:00:00Z", "to": "2027-12-01T00:00:00Z", "bucket": "hour"}, "bucket"),
    ({"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "to"),
    ({"from": "2026-01-01T00:00:00"}, "from"),
])
def test_bad_parameters_are_422_naming_them(client, series_data, params, field):
    response = client.get("/v1/usage/series", headers=auth(series_data["acme"]), query_string=params)
    assert response.status_code == 422, response.data[:300]
    assert field in response.get_json()["errors"]["query"]


def test_too_many_buckets_says_so(client, series_data):
    response = client.get("/v1/usage/series", headers=auth(series_data["acme"]), query_string={
        "from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z", "bucket": "hour"})
    assert "10,000" in response.get_json()["errors"]["query"]["bucket"][0]


def test_all_tenants_series_needs_a_superuser(client, series_data):
    assert client.get("/v1/usage/all/series", headers=auth(series_data["acme"])).status_code == 403


def test_a_fixed_number_of_statements(app, client, keys):
    keys.tenant("ops", allows_superusers=True)
    key = keys.key("ops", superuser=True)
    client.get("/v1/usage/all", headers=auth(key))  # refreshes last_used_at, which then waits a minute
    counts = set()
    for tenants, days, group_by in ((1, 2, ""), (30, 60, "tenant_id,operation,model,status,error_class")):
        names = [keys.tenant(f"s{days}-{i:02d}") for i in range(tenants)]
        start = dt.datetime(2026, 1, 1, tzinfo=UTC)
        store(app, random_records(seeded(days), names, tenants * 10, start, start + dt.timedelta(days=days)))
        count, body = count_statements(client, "/v1/usage/all/series", key, bucket="hour",
                                       group_by=group_by, **{"from": iso(start),
                                                             "to": iso(start + dt.timedelta(days=days))})
        assert len(body["buckets"]) == days * 24
        counts.add(count)
    assert len(counts) == 1
