"""GET /v1/usage/calls and /v1/usage/all/calls as JSON pages: order, fields,
filters, window, limits, cursors, stable paging under concurrent inserts,
tenant isolation. (Exports: tests/test_call_log_export.py.)

Every expected answer is computed here from the records a test stored, in
the order it stored them: newest first, and of calls at the same instant
the one stored last first (`log` stores those in batches of their own).
"""
import base64
import datetime as dt
import json
from decimal import Decimal

import pytest

from conftest import auth
from data import UTC, record, store

T0 = dt.datetime(2026, 11, 1, tzinfo=UTC)
MICRO = dt.timedelta(microseconds=1)
OWN, ALL = "/v1/usage/calls", "/v1/usage/all/calls"


def utc_text(moment):
    """RFC 3339 in UTC with Z, microseconds only when there are some."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{moment.microsecond:06d}" if moment.microsecond else "") + "Z"


def as_listed(rec):
    """A stored record as the call log lists it."""
    return {"tenant_id": rec["tenant_id"], "call_id": rec["call_id"], "timestamp": utc_text(rec["timestamp"]),
            "operation": rec["operation"], "model": rec["model"], "call_duration_ms": rec["call_duration_ms"],
            "input_tokens": rec["input_tokens"], "output_tokens": rec["output_tokens"],
            "cost_usd": Decimal(rec["cost_usd"]), "status": rec["status"],
            "error_class": rec.get("error_class")}


def newest_first(stored, keep=lambda r: True):
    """`stored` (in the order stored) that `keep` keeps, newest first, the last stored first among equals."""
    indexed = [(r["timestamp"], i, r) for i, r in enumerate(stored) if keep(r)]
    return [as_listed(r) for _, _, r in sorted(indexed, key=lambda item: item[:2], reverse=True)]


def parse(response):
    assert response.status_code == 200, response.data
    return json.loads(response.data, parse_float=Decimal)


def read_all(client, path, key, **params):
    """Every page's calls, and how many pages it took."""
    calls, cursor, count = [], None, 0
    while True:
        body = parse(client.get(path, headers=auth(key), query_string={**params, **({"cursor": cursor} if cursor else {})}))
        calls += body["calls"]
        count += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return calls, count


def query_errors(response):
    assert response.status_code == 422, response.data
    return response.get_json()["errors"]["query"]


@pytest.fixture
def log(app, keys):
    for tenant in ("acme", "globex"):
        keys.tenant(tenant)
    keys.tenant("ops", allows_superusers=True)
    stored = []

    def add(records):
        """Store `records`, calls of one instant in batches of their own, in
        order: a batch stores its calls in an order of its own choosing."""
        batches, seen = [], {}
        for rec in records:
            seen[rec["timestamp"]] = seen.get(rec["timestamp"], -1) + 1
            if seen[rec["timestamp"]] == len(batches):
                batches.append([])
            batches[seen[rec["timestamp"]]].append(rec)
        for batch in batches:
            store(app, batch)
            stored.extend(batch)

    add.stored = stored
    add.acme, add.globex = keys.key("acme"), keys.key("globex")
    add.admin, add.reader = keys.key("ops", superuser=True), keys.key("ops", scopes=["all:read"])
    add.usage_only = keys.key("ops", superuser=True, scopes=["usage:read"])
    return add


def varied(tenant, count, start=T0, step=dt.timedelta(minutes=7)):
    """Calls of every kind; every fourth shares its instant with the one before."""
    records = []
    for i in range(count):
        moment = start + step * (i - i % 4 // 3)
        failed = i % 5 == 3
        records.append(record(tenant, moment + MICRO * (i % 3 == 1), operation=["analyze", "summarize"][i % 2],
                              model=["gpt-4o", "claude-haiku", "gpt-4o-mini"][i % 3],
                              status="error" if failed else "ok", cost="0" if failed else f"0.{i:06d}",
                              error_class=["RateLimitError", "APITimeoutError"][i % 2] if failed else None,
                              duration=100 + i, input_tokens=10 * i, output_tokens=i))
    return records


def test_pages_hold_every_call_once_newest_first_with_the_recorded_fields(client, log):
    log(varied("acme", 23) + varied("globex", 9, start=T0 + dt.timedelta(seconds=30)))
    calls, pages = read_all(client, OWN, log.acme, limit=5)
    assert calls == newest_first(log.stored, lambda r: r["tenant_id"] == "acme")
    assert pages == 5
    everyone, pages = read_all(client, ALL, log.reader, limit=1000)
    assert everyone == newest_first(log.stored) and pages == 1
    assert list(everyone[0]) == ["tenant_id", "call_id", "timestamp", "operation", "model", "call_duration_ms",
                                 "input_tokens", "output_tokens", "cost_usd", "status", "error_class"]
    first = parse(client.get(ALL, headers=auth(log.admin)))
    assert first["calls"] == everyone[:32] and first["next_cursor"] is None  # default limit 100


def test_a_page_of_exactly_the_rest_ends_the_listing(client, log):
    log(varied("acme", 6))
    first = parse(client.get(OWN, headers=auth(log.acme), query_string={"limit": 3}))
    second = parse(client.get(OWN, headers=auth(log.acme), query_string={"limit": 3, "cursor": first["next_cursor"]}))
    assert len(second["calls"]) == 3 and second["next_cursor"] is None
    empty = parse(client.get(OWN, headers=auth(log.globex)))
    assert empty == {"calls": [], "next_cursor": None}


def test_paging_is_stable_while_calls_are_recorded(client, log):
    """Between page reads, calls land before, inside and after the part
    already read, at the very instant a page ended, and past both ends: each
    call stored before the first page appears exactly once, in order, and
    none stored later appears."""
    log(varied("acme", 30, step=dt.timedelta(minutes=10)))
    before = newest_first(log.stored, lambda r: r["tenant_id"] == "acme")
    seen, cursor, rounds = [], None, 0
    while True:
        params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        body = parse(client.get(OWN, headers=auth(log.acme), query_string=params))
        seen += body["calls"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
        rounds += 1
        last = dt.datetime.fromisoformat(body["calls"][-1]["timestamp"])
        first_seen = dt.datetime.fromisoformat(seen[0]["timestamp"])
        oldest = dt.datetime.fromisoformat(before[-1]["timestamp"])
        log([record("acme", last, model=f"same-instant-{rounds}"),  # ties the page's end, stored later
             record("acme", last - MICRO, model=f"just-after-{rounds}"),  # not yet read
             record("acme", last + dt.timedelta(minutes=3), model=f"read-part-{rounds}"),
             record("acme", first_seen + dt.timedelta(hours=rounds), model=f"newest-{rounds}"),
             record("acme", oldest - dt.timedelta(hours=rounds), model=f"oldest-{rounds}"),
             record("globex", last - MICRO, model=f"other-tenant-{rounds}")])
    assert rounds >= 6
    assert seen == before
    # A new listing sees them all.
    assert read_all(client, OWN, log.acme, limit=1000)[0] == newest_first(
        log.stored, lambda r: r["tenant_id"] == "acme")


@pytest.mark.parametrize("params, keep", [
    ({"operation": "summarize"}, lambda r: r["operation"] == "summarize"),
    ({"model": ["gpt-4o", "claude-haiku"]}, lambda r: r["model"] in ("gpt-4o", "claude-haiku")),
    ({"status": "error"}, lambda r: r["status"] == "error"),
    ({"status": "ok"}, lambda r: r["status"] == "ok"),
    ({"error_class": "RateLimitError"}, lambda r: r.get("error_class") == "RateLimitError"),
    ({"tenant_id": "globex"}, lambda r: r["tenant_id"] == "globex"),
    ({"tenant_id": ["globex", "acme"], "model": "gpt-4o-mini", "status": "ok"},
     lambda r: r["model"] == "gpt-4o-mini" and r["status"] == "ok"),
    ({"operation": "analyze", "error_class": ["APITimeoutError", "RateLimitError"]},
     lambda r: r["operation"] == "analyze" and r["status"] == "error"),
])
def test_each_filter(client, log, params, keep):
    log(varied("acme", 25) + varied("globex", 15, start=T0 + dt.timedelta(seconds=1)))
    expected = newest_first(log.stored, keep)
    assert expected and len(expected) < len(log.stored)
    assert read_all(client, ALL, log.admin, limit=4, **params)[0] == expected
    if "tenant_id" not in params:
        mine = newest_first(log.stored, lambda r: keep(r) and r["tenant_id"] == "acme")
        assert read_all(client, OWN, log.acme, limit=3, **params)[0] == mine


def test_the_window_holds_from_and_not_to(client, log):
    start, end = T0 + dt.timedelta(hours=1), T0 + dt.timedelta(hours=2)
    log([record("acme", moment, model=name) for moment, name in (
        (start - MICRO, "before"), (start, "at from"), (start + MICRO, "inside"),
        (end - MICRO, "last inside"), (end, "at to"), (end + MICRO, "after"))])
    models = [c["model"] for c in read_all(client, OWN, log.acme, limit=1, **{
        "from": start.isoformat(), "to": end.isoformat()})[0]]
    assert models == ["last inside", "inside", "at from"]
    # In another offset (an unescaped + arriving as a space), and open at either end.
    berlin = (start.astimezone(dt.timezone(dt.timedelta(hours=1))).isoformat()).replace("+", " ")
    assert [c["model"] for c in read_all(client, OWN, log.acme, **{"from": berlin})[0]][-1] == "at from"
    assert [c["model"] for c in read_all(client, OWN, log.acme, to=end.isoformat())[0]][0] == "last inside"


@pytest.mark.parametrize("params, name", [
    ({"limit": 0}, "limit"), ({"limit": 1001}, "limit"), ({"limit": "ten"}, "limit"), ({"limit": "2.5"}, "limit"),
    ({"limit": -1}, "limit"), ({"from": "2026-11-01T00:00:00"}, "from"), ({"to": "yesterday"}, "to"),
    ({"from": "2026-11-02T00:00:00Z", "to": "2026-11-01T00:00:00Z"}, "to"), ({"status": "failed"}, "status"),
    ({"operation": "Bad-Op"}, "operation"), ({"model": ""}, "model"), ({"error_class": "x" * 256}, "error_class"),
    ({"percentiles": "exact"}, "percentiles"), ({"tenant_id": "globex"}, "tenant_id"), ({"cursor": ""}, "cursor"),
])
def test_bad_parameters_are_422_naming_them(client, log, params, name):
    assert name in query_errors(client.get(OWN, headers=auth(log.acme), query_string=params))


def test_limit_bounds(client, log):
    log(varied("acme", 1001, step=dt.timedelta(seconds=1)))
    for limit, size in ((1, 1), (1000, 1000)):
        body = parse(client.get(OWN, headers=auth(log.acme), query_string={"limit": limit}))
        assert len(body["calls"]) == size and body["next_cursor"]
    assert "tenant_id" in query_errors(client.get(ALL, headers=auth(log.admin), query_string={"tenant_id": "Bad Id"}))


def cursor_of(client, key, path=OWN, **params):
    body = parse(client.get(path, headers=auth(key), query_string={"limit": 1, **params}))
    assert body["next_cursor"]
    return body["next_cursor"]


def unpadded(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_malformed_or_altered_cursor_is_422(client, log):
    log(varied("acme", 5))
    good = cursor_of(client, log.acme)
    fields = json.loads(base64.urlsafe_b64decode(good + "=" * (-len(good) % 4)))
    altered = [fields[:2] + [fields[2] + 1] + fields[3:], fields[:3] + [fields[3] + 100] + fields[4:],
               [2] + fields[1:], fields[:5], fields[:5] + ["0" * 32]]
    for bad in ["abc", "!!!!", "x" * 600, unpadded(b"not json"), unpadded(b"[1, 2, 3]"), unpadded(b"{}"),
                good[:-2], good + "A", *(unpadded(json.dumps(f).encode()) for f in altered)]:
        errors = query_errors(client.get(OWN, headers=auth(log.acme), query_string={"cursor": bad}))
        assert errors["cursor"] == ["Not a cursor of this listing: pass back `next_cursor` exactly as the previous "
                                    "page gave it, or leave `cursor` out to start from the newest call."], bad


def test_a_cursor_reused_with_another_query_is_422(client, log):
    log(varied("acme", 5) + varied("globex", 5))
    window = {"from": "2026-10-01T00:00:00Z"}
    good = cursor_of(client, log.acme, model=["gpt-4o", "claude-haiku"], **window)
    same = {"model": ["claude-haiku", "gpt-4o"], **window}  # the same filters, in another order
    assert parse(client.get(OWN, headers=auth(log.acme), query_string={"cursor": good, **same}))["calls"]
    for key, path, params in [(log.acme, OWN, {"model": "gpt-4o", **window}), (log.acme, OWN, {**same, "status": "ok"}),
                              (log.acme, OWN, {"model": same["model"]}),
                              (log.acme, OWN, {**same, "to": "2027-01-01T00:00:00Z"}),
                              (log.globex, OWN, same), (log.admin, ALL, same),
                              (log.admin, ALL, {**same, "tenant_id": "acme"})]:
        errors = query_errors(client.get(path, headers=auth(key), query_string={"cursor": good, **params}))
        assert "another window, other filters or another tenant" in errors["cursor"][0], (path, params)


def test_a_tenant_key_reads_its_own_calls_only(client, log):
    log(varied("acme", 8) + varied("globex", 8))
    for key, tenant in ((log.acme, "acme"), (log.globex, "globex")):
        calls, _ = read_all(client, OWN, key, limit=3)
        assert {c["tenant_id"] for c in calls} == {tenant} and len(calls) == 8
    for key in (log.acme, log.usage_only):
        refused = client.get(ALL, headers=auth(key))
        assert refused.status_code == 403 and "'all:read'" in refused.get_json()["message"]
    assert client.get(OWN, headers=auth(log.reader)).status_code == 403  # all:read alone reads no own tenant
    assert client.get(OWN).status_code == 401


def test_money_is_exact(client, log):
    log([record("acme", T0, cost="0.000001"), record("acme", T0 + MICRO, cost="123456.789012"),
         record("acme", T0 + 2 * MICRO, cost="999999.999999"), record("acme", T0 + 3 * MICRO, cost="0"),
         record("acme", T0 + 4 * MICRO, cost="0.1")])
    text = client.get(OWN, headers=auth(log.acme)).get_data(as_text=True)
    costs = [part.split(",")[0] for part in text.split('"cost_usd":')[1:]]
    assert costs == ["0.100000", "0.000000", "999999.999999", "123456.789012", "0.000001"]
