"""POST /v1/usage/calls: batched, idempotent, all-or-nothing."""
import datetime as dt
import json
import threading
import urllib.error
import urllib.request
from decimal import Decimal

import pytest

from app.models import LlmCall
from conftest import auth
from data import UTC, random_records, record, seeded, to_json
from expected import assert_stats_equal, expected_stats

T0 = dt.datetime(2026, 11, 1, tzinfo=UTC)


def post(client, key, calls, **kwargs):
    response = client.post("/v1/usage/calls", headers=auth(key), json={"calls": calls}, **kwargs)
    return response.status_code, json.loads(response.data, parse_float=Decimal)


def stored(app):
    with app.app_context():
        return sorted((c.tenant_id, str(c.call_id)) for c in LlmCall.select())


@pytest.fixture
def tenants(keys):
    keys.tenant("acme")
    keys.tenant("globex")
    keys.tenant("ops", allows_superusers=True)
    return {"acme": keys.key("acme"), "globex": keys.key("globex"),
            "super": keys.key("ops", superuser=True)}


def without_tenant(records):
    return [{k: v for k, v in to_json(r).items() if k != "tenant_id"} for r in records]


def test_tenant_key_batch_then_statistics_match(client, tenants):
    records = random_records(seeded(3), ["acme"], 250, T0, T0 + dt.timedelta(days=2))
    status, body = post(client, tenants["acme"], without_tenant(records))
    assert (status, body) == (201, {"received": 250, "created": 250, "duplicates": 0})
    response = client.get("/v1/usage", headers=auth(tenants["acme"]))
    assert_stats_equal(json.loads(response.data, parse_float=Decimal), expected_stats(records, "acme"))


@pytest.mark.app_config(CALLS_ACCEPTED_FROM="1999-01-01T00:00:00Z")  # before PostgreSQL's zero instant
def test_any_text_and_instant_is_stored_as_sent(app, client, tenants):
    """Model and error class are any UTF-8 text, instants keep their
    microseconds, and the cells hold the calls: PostgreSQL receives every
    column as a binary array built by the service (app/repository/arrays.py)."""
    records = [record("acme", T0 + dt.timedelta(microseconds=1), model="modèle-日本", cost="1.000001"),
               record("acme", T0 - dt.timedelta(microseconds=1), status="error", error_class="Délai dépassé ⏱",
                      model="modèle-日本"),
               record("acme", dt.datetime(2000, 1, 1, tzinfo=UTC)),  # PostgreSQL's zero instant, and before it
               record("acme", dt.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))]
    assert post(client, tenants["acme"], without_tenant(records))[0] == 201
    with app.app_context():
        rows = sorted((c.timestamp, c.model, c.status, c.error_class, c.cost_micro_usd) for c in LlmCall.select())
    assert rows == sorted((r["timestamp"], r["model"], r["status"], r.get("error_class"), int(r["cost_usd"] * 10**6))
                          for r in records)
    exact, approximate = (json.loads(client.get("/v1/usage", headers=auth(tenants["acme"]),
                                                query_string={"percentiles": p}).data, parse_float=Decimal)
                          for p in ("exact", "approximate"))
    assert_stats_equal(exact, expected_stats(records, "acme"))
    for name in ("total_calls", "failed_calls", "total_cost_usd", "by_operation", "by_model"):  # from the cells
        assert approximate[name] == exact[name], name


def test_retried_batch_stores_nothing_new(app, client, tenants):
    records = [to_json(record("acme", T0)) for _ in range(5)]
    assert post(client, tenants["acme"], records)[1] == {"received": 5, "created": 5, "duplicates": 0}
    extra = to_json(record("acme", T0))
    assert post(client, tenants["acme"], records + [extra])[1] == {"received": 6, "created": 1, "duplicates": 5}
    assert len(stored(app)) == 6


def test_same_call_id_twice_in_a_batch_counts_once(app, client, tenants):
    one = to_json(record("acme", T0))
    status, body = post(client, tenants["acme"], [one, dict(one)])
    assert (status, body) == (201, {"received": 2, "created": 1, "duplicates": 1})
    assert len(stored(app)) == 1


def test_same_call_id_in_two_tenants_is_two_calls(app, client, tenants):
    one = to_json(record("acme", T0))
    other = {**one, "tenant_id": "globex"}
    assert post(client, tenants["super"], [one, other])[1]["created"] == 2


def test_invalid_record_rejects_the_whole_batch(app, client, tenants):
    good = to_json(record("acme", T0))
    bad_cost = {**to_json(record("acme", T0)), "cost_usd": "0.1234567"}
    bad_status = {**to_json(record("acme", T0)), "status": "error"}
    status, body = post(client, tenants["acme"], [good, bad_cost, bad_status])
    assert status == 422
    errors = body["errors"]["json"]["calls"]
    assert set(errors) == {"1", "2"}
    assert "cost_usd" in errors["1"] and "error_class" in errors["2"]
    assert stored(app) == []


def test_float_cost_with_seven_places_is_refused_not_rounded(app, client, tenants):
    raw = json.dumps({"calls": [{**to_json(record("acme", T0)), "cost_usd": 0}]}).replace(
        '"cost_usd": 0', '"cost_usd": 0.1000001')
    response = client.post("/v1/usage/calls", headers={**auth(tenants["acme"]),
                                                        "Content-Type": "application/json"}, data=raw)
    assert response.status_code == 422
    assert "cost_usd" in response.get_json()["errors"]["json"]["calls"]["0"]


def test_cross_tenant_write_is_403_and_stores_nothing(app, client, tenants):
    mine = to_json(record("acme", T0))
    theirs = to_json(record("globex", T0))
    status, body = post(client, tenants["acme"], [mine, theirs])
    assert status == 403 and body["code"] == 403
    assert stored(app) == []


def test_superuser_writes_for_named_existing_tenants(app, client, tenants):
    calls = [to_json(record("acme", T0)), to_json(record("globex", T0))]
    assert post(client, tenants["super"], calls)[0] == 201
    assert [t for t, _ in stored(app)] == ["acme", "globex"]

    missing = without_tenant([record("acme", T0)])
    unknown = to_json(record("nobody", T0))
    status, body = post(client, tenants["super"], [to_json(record("acme", T0))] + missing + [unknown])
    assert status == 422
    errors = body["errors"]["json"]["calls"]
    assert set(errors) == {"1", "2"} and "tenant_id" in errors["1"] and "nobody" in errors["2"]["tenant_id"][0]
    assert len(stored(app)) == 2


@pytest.mark.parametrize("calls", [[], "several"])
def test_batch_size_bounds(client, tenants, calls):
    if calls == "several":
        calls = [to_json(record("acme", T0)) for _ in range(1001)]
    status, body = post(client, tenants["acme"], calls)
    assert status == 422 and "calls" in body["errors"]["json"]


def test_a_thousand_records_is_fine(app, client, tenants):
    calls = [to_json(record("acme", T0)) for _ in range(1000)]
    assert post(client, tenants["acme"], calls)[1]["created"] == 1000


def test_body_that_is_not_json_is_400(client, tenants):
    response = client.post("/v1/usage/calls", data="{nope",
                           headers={**auth(tenants["acme"]), "Content-Type": "application/json"})
    assert response.status_code == 400 and response.is_json


def test_body_over_the_limit_is_413(app, client, tenants):
    app.config["MAX_CONTENT_LENGTH"] = 2048
    status, body = post(client, tenants["acme"], [to_json(record("acme", T0)) for _ in range(20)])
    assert status == 413 and body["code"] == 413


def test_missing_key_is_401(client):
    assert client.post("/v1/usage/calls", json={"calls": []}).status_code == 401


def test_concurrent_retries_on_several_workers_never_double_count(app, tenants, live_server):
    """Four overlapping batches, each sent six times at once to three gunicorn workers."""
    pool = [to_json(record("acme", T0 + dt.timedelta(seconds=i))) for i in range(400)]
    batches = [pool[0:200], pool[100:300], pool[200:400], pool[50:350]]
    results, failures = [], []

    def send(batch):
        request = urllib.request.Request(
            live_server + "/v1/usage/calls", data=json.dumps({"calls": batch}).encode(),
            headers={**auth(tenants["acme"]), "Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                results.append(json.load(response))
        except urllib.error.HTTPError as error:
            failures.append((error.code, error.read()))

    threads = [threading.Thread(target=send, args=(batch,)) for batch in batches for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(results) == 24
    assert sum(r["created"] for r in results) == 400
    assert all(r["received"] == r["created"] + r["duplicates"] for r in results)
    assert len(stored(app)) == 400
