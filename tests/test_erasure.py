"""Erasing a tenant: DELETE /v1/tenants/{tenant_id} and `tenants erase`.

Expected numbers are computed here from the records the test stored
(tests/expected.py): after the erasure every answer is what the other
tenants' records alone give.
"""
import datetime as dt
import json
import sqlite3
import threading
import time

import psycopg

import pytest

from app import chunks, erasure
from app.db import database
from app.repository import rollups
from app.repository.rollups import model_days
from app.db.locks import wait_for_ingestion
from app.budgets import service as budgets
from app.models import (ApiKey, AuditEvent, Budget, BudgetAlert, BudgetSpend, LlmCall, Tenant, UsageRollup,
                        WebhookDelivery, WebhookEndpoint, WebhookEvent)
from app.webhooks import endpoints
from conftest import auth
from data import UTC, random_records, record, seeded, store, to_json
from expected import assert_stats_equal, expected_stats
from test_retention import lock_free_after_each
from test_rollups import assert_cells_match, assert_close


def today():
    return dt.datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@pytest.fixture
def site(app, keys):
    """acme (calls, two keys, a budget that fired, an endpoint of its own
    with deliveries) and beta (calls, a key) beside ops (the admin's tenant),
    and an endpoint for every tenant."""
    for tenant_id in ("acme", "beta"):
        keys.tenant(tenant_id)
    keys.tenant("ops", allows_superusers=True)
    with app.app_context():
        budget = budgets.create_budget("acme", "cap", 1, "month")
        own = endpoints.create_endpoint("http://127.0.0.1:9/acme", tenant_id="acme")
        everyone = endpoints.create_endpoint("http://127.0.0.1:9/all")
    start = today() - dt.timedelta(days=70)
    records = random_records(seeded(41), ["acme", "beta"], 500, start, today() + dt.timedelta(hours=3))
    records += [record("acme", today() + dt.timedelta(hours=1), cost="2")]  # fires both thresholds
    store(app, records)
    return {"app": app, "records": records, "admin": keys.key("ops", superuser=True),
            "acme": [keys.key("acme"), keys.key("acme", name="second")], "beta": keys.key("beta"),
            "budget": budget.id, "endpoints": (own.id, everyone.id)}


def get(client, path, key, status=200, **params):
    response = client.get(path, headers=auth(key), query_string=params)
    assert response.status_code == status, response.data
    return response.get_json()


def rows_naming(app, tenant_id, budget_id, endpoint_id):
    """How many rows of each table name the tenant (its budget, its endpoint)."""
    with app.app_context():
        events = WebhookEvent.select(WebhookEvent.id).where(WebhookEvent.tenant_id == tenant_id)
        return {
            "tenant": Tenant.select().where(Tenant.tenant_id == tenant_id).count(),
            "llm_call": LlmCall.select().where(LlmCall.tenant == tenant_id).count(),
            "usage_rollup": UsageRollup.select().where(UsageRollup.tenant_id == tenant_id).count(),
            "api_key": ApiKey.select().where(ApiKey.tenant == tenant_id).count(),
            "budget": Budget.select().where(Budget.tenant == tenant_id).count(),
            "budget_spend": BudgetSpend.select().where(BudgetSpend.budget_id == budget_id).count(),
            "budget_alert": BudgetAlert.select().where(BudgetAlert.budget_id == budget_id).count(),
            "webhook_endpoint": WebhookEndpoint.select().where(WebhookEndpoint.id == endpoint_id).count(),
            "webhook_event": events.count(),
            "webhook_delivery": WebhookDelivery.select().where(
                WebhookDelivery.event.in_(events) | (WebhookDelivery.endpoint == endpoint_id)).count(),
        }


def erase_events(app):
    with app.app_context():
        return [(e.actor, e.target, json.loads(e.details))
                for e in AuditEvent.select().where(AuditEvent.action == "tenant.erase")]


def assert_erased(app, client, runner, site):
    """Nothing names acme; answers are beta's alone; the rollups still match the calls."""
    records, admin = site["records"], site["admin"]
    assert set(rows_naming(app, "acme", site["budget"], site["endpoints"][0]).values()) == {0}
    assert get(client, "/v1/tenants/acme", admin, status=404)["message"] == "Unknown tenant 'acme'."
    for key in site["acme"]:
        assert get(client, "/v1/usage", key, status=401)["message"] == "The API key is unknown or revoked."
    beta = [r for r in records if r["tenant_id"] == "beta"]
    body = get(client, "/v1/usage/all", admin)
    assert [t["tenant_id"] for t in body["tenants"]] == ["beta"]
    assert_stats_equal(body["total"], expected_stats(beta, None))
    assert_close(get(client, "/v1/usage/all", admin, percentiles="approximate")["total"],
                 expected_stats(beta, None))
    assert_stats_equal(get(client, "/v1/usage", site["beta"]), expected_stats(beta, "beta"))
    result = runner.invoke(args=["rollups", "verify"])
    assert result.exit_code == 0, result.output
    with app.app_context():  # the endpoint for every tenant stays, with beta's deliveries if any
        assert WebhookEndpoint.get_by_id(site["endpoints"][1]).deleted_at is None


def test_erasing_a_tenant_deletes_everything_it_held(app, client, runner, site):
    admin, records = site["admin"], site["records"]
    held = rows_naming(app, "acme", site["budget"], site["endpoints"][0])
    assert all(held[table] for table in ("llm_call", "usage_rollup", "budget_spend", "budget_alert",
                                         "webhook_event", "webhook_delivery")), held
    before = get(client, "/v1/usage/all", admin)["total"]
    acme = [r for r in records if r["tenant_id"] == "acme"]
    response = client.delete("/v1/tenants/acme", headers={**auth(admin), "X-Request-ID": "erase-acme"})
    assert response.status_code == 204, response.data
    assert_erased(app, client, runner, site)
    after = get(client, "/v1/usage/all", admin)["total"]
    assert after["total_calls"] == before["total_calls"] - len(acme)  # less exactly acme's numbers
    assert (after["failed_calls"] == before["failed_calls"] - sum(r["status"] == "error" for r in acme))
    assert (after["total_cost_usd"] == before["total_cost_usd"]
            - sum(r["cost_usd"] for r in acme if r["status"] == "ok"))
    (actor, target, details), = erase_events(app)
    assert (actor, target) == (admin.split("_")[1], "tenant:acme")
    assert details == {"name": "acme", "calls": len(acme), "cells": held["usage_rollup"], "keys": 2,
                       "budgets": 1, "webhooks": 1}
    with app.app_context():
        assert AuditEvent.get(AuditEvent.action == "tenant.erase").request_id == "erase-acme"
    # the id is free again: a new tenant, with nothing of the old one
    assert client.post("/v1/tenants", headers=auth(admin), json={"tenant_id": "acme"}).status_code == 201
    assert get(client, "/v1/tenants/acme/budgets", admin) == []


def test_a_key_cannot_erase_its_own_tenant_nor_an_unknown_one(client, site):
    admin = site["admin"]
    refused = client.delete("/v1/tenants/ops", headers=auth(admin))
    assert refused.status_code == 409
    assert "belongs to tenant 'ops', which it cannot erase" in refused.get_json()["message"]
    assert client.delete("/v1/tenants/nobody", headers=auth(admin)).status_code == 404
    assert client.delete("/v1/tenants/acme", headers=auth(site["beta"])).status_code == 403
    assert get(client, "/v1/tenants/ops", admin)["tenant_id"] == "ops"


def test_an_interrupted_erasure_goes_on_where_it_stopped(app, client, runner, site):
    admin = site["admin"]
    acme = [r for r in site["records"] if r["tenant_id"] == "acme"]

    def crash_after_the_first_chunk(deleted):
        raise KeyboardInterrupt

    with app.app_context():
        begun = erasure.begin("acme")
        with pytest.raises(KeyboardInterrupt):
            erasure.complete(begun, chunks.ChunkSize(5, adapt=False), progress=crash_after_the_first_chunk)
    left = rows_naming(app, "acme", site["budget"], site["endpoints"][0])
    assert left["llm_call"] == len(acme) - 5 and left["tenant"] == 1
    # marked: unknown everywhere, its keys refused, its calls refused
    assert get(client, "/v1/tenants/acme", admin, status=404)
    assert "acme" not in [t["tenant_id"] for t in get(client, "/v1/tenants", admin)]
    assert get(client, "/v1/usage", site["acme"][0], status=401)
    late = client.post("/v1/usage/calls", headers=auth(admin), json={"calls": [to_json(record("acme", today()))]})
    assert late.status_code == 422 and "Unknown tenant 'acme'" in json.dumps(late.get_json())
    again = client.post("/v1/tenants", headers=auth(admin), json={"tenant_id": "acme"})
    assert again.status_code == 409 and "is being erased" in again.get_json()["message"]
    result = runner.invoke(args=["tenants", "erase", "acme", "--yes"])
    assert result.exit_code == 0, result.output
    assert "Tenant acme is being erased since" in result.output
    assert f"Erased tenant acme: {len(acme) - 5} call(s), " in result.output
    assert_erased(app, client, runner, site)
    assert len(erase_events(app)) == 1


def test_a_tenant_too_large_for_a_request_is_answered_202_and_the_command_line_finishes(
        app, client, runner, site, monkeypatch):
    monkeypatch.setattr(erasure, "SYNCHRONOUS_CALLS", 3)
    admin = site["admin"]
    acme = [r for r in site["records"] if r["tenant_id"] == "acme"]
    for _ in range(2):  # asking again answers the same: the erasure is begun once
        response = client.delete("/v1/tenants/acme", headers=auth(admin))
        assert response.status_code == 202, response.data
        body = response.get_json()
        assert (body["tenant_id"], body["calls_left"]) == ("acme", len(acme))
        assert "flask --app wsgi tenants erase acme" in body["message"]
    assert get(client, "/v1/tenants/acme", admin, status=404)
    assert get(client, "/v1/usage", site["acme"][1], status=401)
    result = runner.invoke(args=["tenants", "erase", "--pending"])
    assert result.exit_code == 0 and f"Erased tenant acme: {len(acme)} call(s)" in result.output, result.output
    assert_erased(app, client, runner, site)
    assert client.delete("/v1/tenants/acme", headers=auth(admin)).status_code == 404
    assert len(erase_events(app)) == 1


def test_tenants_erase_asks_first_and_yes_skips_the_question(app, client, runner, site):
    acme = [r for r in site["records"] if r["tenant_id"] == "acme"]
    result = runner.invoke(args=["tenants", "erase", "acme"], input="n\n")
    assert result.exit_code == 1 and "Aborted" in result.output
    assert f"Erase tenant acme with {len(acme)} call(s), " in result.output
    assert "2 key(s), 1 budget(s), 1 webhook(s)? This cannot be undone. [y/N]" in result.output
    assert get(client, "/v1/tenants/acme", site["admin"])["tenant_id"] == "acme"  # nothing changed
    assert get(client, "/v1/usage", site["acme"][0])["total_calls"] == len(acme)
    result = runner.invoke(args=["tenants", "erase", "acme", "--yes"])
    assert result.exit_code == 0 and "[y/N]" not in result.output, result.output
    assert_erased(app, client, runner, site)
    result = runner.invoke(args=["tenants", "erase", "acme", "--yes"])
    assert result.exit_code == 1 and "Unknown tenant 'acme'." in result.output
    for args in (["tenants", "erase"], ["tenants", "erase", "beta", "--pending"]):
        result = runner.invoke(args=args)
        assert result.exit_code == 2 and "Name one TENANT_ID, or give --pending." in result.output


def test_erasure_deletes_in_chunks_and_leaves_the_write_lock_free_between_them(app, site, database_url, tmp_path):
    acme = [r for r in site["records"] if r["tenant_id"] == "acme"]
    sizes = []
    with app.app_context():
        cells = UsageRollup.select().where(UsageRollup.tenant_id == "acme")
        per_grain = [cells.where(UsageRollup.grain == grain).count()
                     for grain in ("day", "month", "tenant_month", "tenant_day", "failed_day")]
        done = erasure.erase("acme", chunks.ChunkSize(40, adapt=False),
                             lock_free_after_each(sizes, database_url, tmp_path))
    expected = [40] * (len(acme) // 40) + [len(acme) % 40]
    for count in per_grain:
        expected += [40] * (count // 40) + [count % 40]
    assert sizes == expected
    assert (done.deleted["calls"], done.deleted["cells"]) == (len(acme), sum(per_grain))


def test_model_day_cells_recomputed_meanwhile_keep_the_batches_written_meanwhile(app, site, monkeypatch, database_url):
    """Erasure's step 3 recomputes the model_day cells of a (day, model) in a
    transaction of its own. Held open there, once it has read the calls: a
    batch with a call of that day and model waits for it, then adds its call
    to the cells recomputed without it; on PostgreSQL, which locks those
    cells alone, a batch of another day goes through meanwhile (SQLite's
    one write lock keeps it waiting too). After both, the cells hold every
    call, and `rollups verify` holds."""
    day, model = today(), site["records"][-1]["model"]
    same = record("beta", day + dt.timedelta(minutes=7), model=model, cost="0.25")
    other_day = record("beta", day - dt.timedelta(days=2), model=model, cost="0.5")
    read, go = threading.Event(), threading.Event()
    original = model_days.calls_between

    def read_then_wait(start, end, model=None):
        rows = list(original(start, end, model))
        read.set()
        go.wait(10)
        return rows

    monkeypatch.setattr(model_days, "calls_between", read_then_wait)
    answers = {}

    def post(name, rec):
        answers[name] = app.test_client().post("/v1/usage/calls", headers=auth(site["beta"]),
                                               json={"calls": [to_json(rec)]}).status_code

    def recompute():
        with app.app_context():
            rollups.rebuild_model_days([day])

    recomputing = threading.Thread(target=recompute)
    recomputing.start()
    try:
        assert read.wait(10)
        writers = {name: threading.Thread(target=post, args=(name, rec))
                   for name, rec in (("same", same), ("other day", other_day))}
        for writer in writers.values():
            writer.start()
        time.sleep(0.5)
        assert "same" not in answers, "a batch changed cells being recomputed"
        if not database_url.startswith("sqlite"):
            writers["other day"].join(5)
            assert answers.get("other day") == 201, "a batch of another day waited for the recompute"
    finally:
        go.set()
        recomputing.join(10)
    for writer in writers.values():
        writer.join(15)
    assert answers == {"same": 201, "other day": 201}
    assert_cells_match(app, site["records"] + [same, other_day])


def test_wait_for_ingestion_waits_for_a_batch_in_flight_and_needs_a_transaction(app, keys, database_url):
    """Erasure's step 1 and 4 and every budget change call it (app/db/locks.py):
    it returns only once the tenant's batch in flight committed. The batch is
    played by another connection holding what an INSERT of a call holds until
    COMMIT: PostgreSQL a KEY SHARE lock on the tenant's row (the foreign key),
    SQLite the database's write lock."""
    keys.tenant("acme")
    if database_url.startswith("sqlite"):
        batch = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None, timeout=0)
        batch.execute("BEGIN IMMEDIATE")
    else:
        batch = psycopg.connect(database_url.replace("postgresql+pool://", "postgresql://"))
        batch.execute("SELECT 1 FROM tenant WHERE tenant_id = 'acme' FOR KEY SHARE")
    returned = threading.Event()

    def wait():
        with app.app_context(), database.atomic():
            wait_for_ingestion("acme")
            returned.set()

    waiter = threading.Thread(target=wait)
    waiter.start()
    try:
        time.sleep(0.3)
        assert not returned.is_set(), "it returned while the batch was in flight"
    finally:
        batch.execute("COMMIT")
        batch.close()
    waiter.join(5)
    assert returned.is_set()
    with app.app_context(), pytest.raises(RuntimeError, match="inside database.atomic"):
        wait_for_ingestion("acme")
