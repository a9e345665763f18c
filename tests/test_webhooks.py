"""Webhooks: endpoints (REST and CLI), the outbox, signed deliveries, retries,
410, timeouts, and workers that run side by side, get killed or stopped."""
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks import Webhook, WebhookVerificationError

from app import create_app
from app.db import ConfigurationError, database
from app.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from app.webhooks import delivery, outbox, sending
from conftest import ROOT, auth, sqlite_write_lock
from receiver import HOLD, OK, TOGETHER, TRICKLE, Receiver

UTC = dt.timezone.utc
THRESHOLD = "budget.threshold_crossed"
DATA = {"budget_id": 7, "threshold": "0.8", "spent_usd": "80.000000", "amount_usd": "100.000000"}


@pytest.fixture
def admin(keys):
    keys.tenant("ops", allows_superusers=True)
    keys.tenant("acme")
    keys.tenant("globex")
    return keys.key("ops", superuser=True, name="root")


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


def create(client, admin, url, status=201, **fields):
    response = client.post("/v1/webhooks", headers=auth(admin), json={"url": url, **fields})
    assert response.status_code == status, response.get_json()
    return response.get_json()


def publish(app, tenant_id="acme", data=DATA):
    with app.app_context(), database.atomic():
        return outbox.publish(THRESHOLD, tenant_id, data)


def deliver(runner):
    result = runner.invoke(args=["webhooks", "deliver", "--once"])
    assert result.exit_code == 0, result.output
    return result


def deliveries(client, admin, webhook_id):
    response = client.get(f"/v1/webhooks/{webhook_id}/deliveries", headers=auth(admin))
    assert response.status_code == 200
    return response.get_json()


def flask_cli(app, *args, **env):
    return subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT,
                            env={**os.environ, "DATABASE_URL": app.config["DATABASE_URL"], **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_endpoints_are_created_listed_and_deleted_and_audited(client, admin):
    created = create(client, admin, "https://alerts.example.com/usage", events=[THRESHOLD], tenant_id="acme")
    assert created["secret"].startswith("whsec_")
    assert len(Webhook(created["secret"])._whsecret) == 32  # what receivers' libraries decode
    assert {k: created[k] for k in ("url", "events", "tenant_id", "disabled_at")} == {
        "url": "https://alerts.example.com/usage", "events": [THRESHOLD], "tenant_id": "acme",
        "disabled_at": None}
    every = create(client, admin, "http://127.0.0.1:9/hook")
    assert (every["events"], every["tenant_id"]) == (None, None)
    assert every["secret"] != created["secret"]

    listed = client.get("/v1/webhooks", headers=auth(admin))
    assert [w["id"] for w in listed.get_json()] == [created["id"], every["id"]]
    assert "secret" not in listed.get_data(as_text=True)
    assert client.delete(f"/v1/webhooks/{created['id']}", headers=auth(admin)).status_code == 204
    assert [w["id"] for w in client.get("/v1/webhooks", headers=auth(admin)).get_json()] == [every["id"]]
    assert client.delete(f"/v1/webhooks/{created['id']}", headers=auth(admin)).status_code == 404
    assert client.get(f"/v1/webhooks/{created['id']}/deliveries", headers=auth(admin)).status_code == 404

    log = client.get("/v1/audit", headers=auth(admin)).get_json()
    assert [(e["action"], e["target"], e["details"]) for e in log[:3]] == [
        ("webhook.delete", f"webhook:{created['id']}", {}),
        ("webhook.create", f"webhook:{every['id']}", {"url": "http://127.0.0.1:9/hook", "events": None,
                                                      "tenant_id": None}),
        ("webhook.create", f"webhook:{created['id']}", {"url": "https://alerts.example.com/usage",
                                                        "events": [THRESHOLD], "tenant_id": "acme"})]
    audit_text = client.get("/v1/audit", headers=auth(admin)).get_data(as_text=True)
    assert created["secret"] not in audit_text and every["secret"] not in audit_text


def test_bad_input_is_a_422_naming_the_field(client, admin):
    for body, field in [
        ({"url": "ftp://example.com/hook"}, "url"),
        ({"url": "example.com/hook"}, "url"),
        ({"url": "https://user:pw@example.com/hook"}, "url"),
        ({"url": "http://example.com:99999/"}, "url"),
        ({"url": "http://exa mple.com/"}, "url"),
        ({}, "url"),
        ({"url": "https://example.com/", "events": ["budget.exploded"]}, "events"),
        ({"url": "https://example.com/", "events": []}, "events"),
        ({"url": "https://example.com/", "tenant_id": "Not A Slug"}, "tenant_id"),
    ]:
        response = client.post("/v1/webhooks", headers=auth(admin), json=body)
        assert response.status_code == 422, body
        assert list(response.get_json()["errors"]["json"]) == [field], body


def test_unknown_tenants_and_webhooks_are_404_and_other_keys_403(client, admin, keys):
    response = client.post("/v1/webhooks", headers=auth(admin), json={"url": "https://e.com/", "tenant_id": "nope"})
    assert (response.status_code, response.get_json()["message"]) == (404, "Unknown tenant 'nope'.")
    assert client.delete("/v1/webhooks/wh_0123456789abcdef", headers=auth(admin)).status_code == 404
    assert client.get("/v1/webhooks/x/deliveries", headers=auth(admin)).status_code == 404
    reader = keys.key("ops", scopes=["all:read", "usage:read", "calls:write"])
    for method, path in [("post", "/v1/webhooks"), ("get", "/v1/webhooks"),
                         ("delete", "/v1/webhooks/wh_0123456789abcdef"),
                         ("get", "/v1/webhooks/wh_0123456789abcdef/deliveries")]:
        response = getattr(client, method)(path, headers=auth(reader), json={"url": "https://e.com/"}
                                           if method == "post" else None)
        assert response.status_code == 403 and "'admin'" in response.get_json()["message"], path
        assert getattr(client, method)(path).status_code == 401
    with client.application.app_context():
        assert WebhookEndpoint.select().count() == 0


def test_the_cli_creates_lists_and_deletes_endpoints(app, runner, admin):
    result = runner.invoke(args=["webhooks", "create", "https://e.com/a", "--tenant", "acme",
                                 "--event", THRESHOLD])
    assert result.exit_code == 0, result.output
    secret = result.output.splitlines()[-1]
    assert secret.startswith("whsec_") and len(Webhook(secret)._whsecret) == 32
    webhook_id = result.output.split()[2]
    listed = runner.invoke(args=["webhooks", "list"]).output
    assert listed == f"{webhook_id}\tactive\t{THRESHOLD}\tacme\thttps://e.com/a\n"
    for args, message in [(["create", "ftp://e.com/"], "Error: url must be an http or https URL"),
                          (["create", "https://e.com/", "--tenant", "nope"], "Error: Unknown tenant 'nope'."),
                          (["delete", "wh_0123456789abcdef"], "Error: Unknown webhook")]:
        refused = runner.invoke(args=["webhooks", *args])
        assert refused.exit_code == 1 and refused.output.startswith(message), refused.output
        assert len(refused.output.splitlines()) == 1
    assert runner.invoke(args=["webhooks", "create", "https://e.com/", "--event", "nope"]).exit_code == 2
    assert runner.invoke(args=["webhooks", "delete", webhook_id]).output == f"Deleted webhook {webhook_id}\n"
    assert runner.invoke(args=["webhooks", "list"]).output == ""
    with app.app_context():
        assert WebhookEndpoint.get_by_id(webhook_id).secret is None  # no secret kept once deleted


def test_publish_writes_a_delivery_per_matching_endpoint_in_the_callers_transaction(app, client, admin):
    every = create(client, admin, "https://e.com/every")["id"]
    acme = create(client, admin, "https://e.com/acme", tenant_id="acme")["id"]
    typed = create(client, admin, "https://e.com/typed", events=[THRESHOLD])["id"]
    create(client, admin, "https://e.com/globex", tenant_id="globex")
    deleted = create(client, admin, "https://e.com/deleted")["id"]
    client.delete(f"/v1/webhooks/{deleted}", headers=auth(admin))
    with app.app_context():
        WebhookEndpoint.update(disabled_at=dt.datetime.now(UTC)).where(WebhookEndpoint.id == every).execute()
    every_again = create(client, admin, "https://e.com/every2")["id"]

    event = publish(app, "acme")
    assert event.id.startswith("evt_") and len(event.id) == 36
    with app.app_context():
        stored = WebhookEvent.get_by_id(event.id)
        assert (stored.type, stored.tenant_id, json.loads(stored.data)) == (THRESHOLD, "acme", DATA)
        assert sorted(d.endpoint_id for d in WebhookDelivery.select()) == sorted([acme, typed, every_again])
        assert {(d.status, d.attempts) for d in WebhookDelivery.select()} == {("pending", 0)}

        with pytest.raises(ZeroDivisionError), database.atomic():  # the calls' transaction fails
            outbox.publish(THRESHOLD, "acme", DATA)
            1 / 0
        assert WebhookEvent.select().count() == 1 and WebhookDelivery.select().count() == 3
        with pytest.raises(RuntimeError):
            outbox.publish(THRESHOLD, "acme", DATA)  # outside a transaction
        with pytest.raises(ValueError), database.atomic():
            outbox.publish("budget.exploded", "acme", DATA)


def test_publish_without_a_matching_endpoint_costs_one_query(app, monkeypatch):
    statements = []
    with app.app_context():
        db = database.obj
        original = db.execute_sql
        with database.atomic():  # the caller's transaction: its BEGIN and COMMIT are not publish's
            monkeypatch.setattr(db, "execute_sql",
                                lambda sql, params=None: statements.append(sql) or original(sql, params))
            assert outbox.publish(THRESHOLD, "acme", DATA) is None
            monkeypatch.undo()
        assert [s.split()[0] for s in statements] == ["SELECT"]
        assert WebhookEvent.select().count() == 0


def test_a_delivery_is_signed_as_standard_webhooks(app, client, runner, admin, receiver):
    webhook = create(client, admin, receiver.url)
    event = publish(app)
    deliver(runner)
    assert len(receiver.received) == 1
    headers, body = receiver.received[0]
    assert Webhook(webhook["secret"]).verify(body, headers) == {
        "type": THRESHOLD, "timestamp": event.created_at.isoformat(), "data": DATA}
    assert headers["webhook-id"] == event.id
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    assert (headers["content-type"], headers["user-agent"]) == ("application/json", "usage-service-webhooks")
    with pytest.raises(WebhookVerificationError):
        Webhook(create(client, admin, receiver.url)["secret"]).verify(body, headers)  # another secret
    [listed] = deliveries(client, admin, webhook["id"])
    assert {k: listed[k] for k in ("event_id", "type", "status", "attempts", "last_status", "last_error",
                                   "next_attempt_at")} == {
        "event_id": event.id, "type": THRESHOLD, "status": "delivered", "attempts": 1, "last_status": 200,
        "last_error": None, "next_attempt_at": None}
    assert listed["delivered_at"] is not None
    deliver(runner)
    assert len(receiver.received) == 1  # delivered once is delivered


def test_a_failed_attempt_is_retried_with_the_same_webhook_id(app, client, runner, admin, receiver):
    app.config["WEBHOOK_RETRY_DELAYS"] = (0, 0, 0)
    webhook = create(client, admin, receiver.url)
    receiver.answer((500, {}), (302, {"Location": receiver.url}), OK)
    event = publish(app)
    deliver(runner)
    assert receiver.ids() == [event.id] * 3
    assert {Webhook(webhook["secret"]).verify(body, headers)["type"] for headers, body in receiver.received} == {
        THRESHOLD}
    [listed] = deliveries(client, admin, webhook["id"])
    assert (listed["status"], listed["attempts"], listed["last_status"]) == ("delivered", 3, 200)


def test_retries_run_out_in_failed_which_metrics_show(app, client, runner, admin, receiver):
    app.config["WEBHOOK_RETRY_DELAYS"] = (0, 0, 0)
    webhook = create(client, admin, receiver.url)
    receiver.answer(*[(503, {})] * 10)
    publish(app)
    deliver(runner)
    assert len(receiver.received) == 4  # the first attempt and one per delay
    [listed] = deliveries(client, admin, webhook["id"])
    assert (listed["status"], listed["attempts"], listed["last_status"], listed["next_attempt_at"]) == (
        "failed", 4, 503, None)
    assert listed["last_error"] == "HTTP 503 Service Unavailable"
    publish(app)
    scraped = {(s.name, tuple(s.labels.items())): s.value
               for family in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))
               for s in family.samples}
    assert scraped[("usage_webhook_deliveries", (("status", "failed"),))] == 1
    assert scraped[("usage_webhook_deliveries", (("status", "pending"),))] == 1
    assert scraped[("usage_webhook_deliveries", (("status", "delivered"),))] == 0


def test_retry_after_is_honoured_up_to_the_longest_delay(app, client, runner, admin, receiver):
    app.config["WEBHOOK_RETRY_DELAYS"] = (1, 60)
    webhook = create(client, admin, receiver.url)
    moment = dt.datetime.now(UTC).replace(microsecond=0) + dt.timedelta(seconds=40)
    receiver.answer((429, {"Retry-After": "30"}), (503, {"Retry-After": "86400"}),
                    (503, {"Retry-After": moment.strftime("%a, %d %b %Y %H:%M:%S GMT")}),
                    (503, {"Retry-After": "soon"}))
    expected = []
    # Asked for; capped at the longest delay; an HTTP date; unreadable, so the schedule's.
    for seconds in (30, 60, None, 1):
        publish(app)
        before = dt.datetime.now(UTC)
        deliver(runner)
        after = dt.datetime.now(UTC)
        expected.append((moment, moment + (after - before)) if seconds is None else
                        (before + dt.timedelta(seconds=seconds), after + dt.timedelta(seconds=seconds)))
    listed = deliveries(client, admin, webhook["id"])[::-1]
    assert [d["status"] for d in listed] == ["pending"] * 4
    for attempt, (earliest, latest) in zip(listed, expected):
        assert earliest <= dt.datetime.fromisoformat(attempt["next_attempt_at"]) <= latest, attempt


def test_410_disables_the_endpoint_and_fails_what_it_had_pending(app, client, runner, admin, receiver):
    gone = Receiver()
    try:
        gone.answer(*[(410, {})] * 3)
        webhook = create(client, admin, gone.url)
        other = create(client, admin, receiver.url)
        publish(app)
        publish(app)
        deliver(runner)
        assert len(gone.received) == 1 and len(receiver.received) == 2
    finally:
        gone.close()
    assert sorted((d["status"], d["attempts"], d["last_status"])
                  for d in deliveries(client, admin, webhook["id"])) == [("failed", 0, None), ("failed", 1, 410)]
    listed = {w["id"]: w for w in client.get("/v1/webhooks", headers=auth(admin)).get_json()}
    assert listed[webhook["id"]]["disabled_at"] is not None and listed[other["id"]]["disabled_at"] is None
    publish(app)
    assert len(deliveries(client, admin, webhook["id"])) == 2  # nothing more for it
    assert "usage_webhook_endpoints_disabled 1.0" in client.get("/metrics").get_data(as_text=True)


def test_a_deleted_endpoint_is_sent_nothing(app, client, runner, admin, receiver):
    webhook = create(client, admin, receiver.url)
    publish(app)
    client.delete(f"/v1/webhooks/{webhook['id']}", headers=auth(admin))
    with app.app_context():  # an event published as the endpoint was being deleted
        event = WebhookEvent.create(id="evt_" + "0" * 32, type=THRESHOLD, tenant_id="acme", data="{}")
        WebhookDelivery.create(event=event, endpoint=webhook["id"], status="pending",
                               next_attempt_at=event.created_at)
    deliver(runner)
    assert receiver.received == []
    with app.app_context():
        assert {(d.status, d.last_error) for d in WebhookDelivery.select()} == {
            ("failed", "the webhook was deleted")}


def test_an_attempt_ends_at_its_timeout_however_the_receiver_trickles(app, client, runner, admin, receiver):
    app.config["WEBHOOK_TIMEOUT"] = 1
    webhook = create(client, admin, receiver.url)
    receiver.answer(HOLD, TRICKLE)
    publish(app)
    publish(app)
    deliver(runner)
    assert len(receiver.received) == 2
    for attempt in deliveries(client, admin, webhook["id"]):
        assert (attempt["status"], attempt["last_status"]) == ("pending", None)
        assert attempt["last_error"] == "no answer within 1 s (WEBHOOK_TIMEOUT)"


def test_several_workers_deliver_each_event_once(app, client, admin, receiver):
    webhook = create(client, admin, receiver.url)
    for number in range(50):
        publish(app, data={"number": number})
    receiver.answer(TOGETHER, TOGETHER, TOGETHER)  # the first three wait for each other
    workers = [flask_cli(app, "webhooks", "deliver", "--once") for _ in range(3)]
    logs = [worker.communicate(timeout=120)[1] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0, 0], logs
    assert not receiver.barrier.broken  # three workers were sending at the same moment
    assert len(receiver.received) == 50 and len(set(receiver.ids())) == 50
    assert sorted(json.loads(body)["data"]["number"] for _, body in receiver.received) == list(range(50))
    assert sum(log.count(": delivered") for log in logs) == 50
    listed = client.get(f"/v1/webhooks/{webhook['id']}/deliveries?page_size=100", headers=auth(admin)).get_json()
    assert {(d["status"], d["attempts"]) for d in listed} == {("delivered", 1)}


def test_a_killed_workers_claim_is_retried_once_its_lease_ends(app, client, runner, admin, receiver):
    app.config["WEBHOOK_TIMEOUT"] = 1
    webhook = create(client, admin, receiver.url)
    receiver.answer(HOLD)
    event = publish(app)
    worker = flask_cli(app, "webhooks", "deliver", WEBHOOK_TIMEOUT="1")
    assert receiver.wait_for(1) == 1
    worker.send_signal(signal.SIGKILL)
    worker.communicate()
    deliver(runner)  # the lease still holds: nobody else sends it meanwhile
    assert len(receiver.received) == 1
    with app.app_context():
        lease_until = WebhookDelivery.get().lease_until
    time.sleep(max(0.0, (lease_until - dt.datetime.now(UTC)).total_seconds()) + 0.1)
    deliver(runner)
    assert receiver.ids() == [event.id, event.id]  # at least once, with the same webhook-id
    [listed] = deliveries(client, admin, webhook["id"])
    assert (listed["status"], listed["attempts"]) == ("delivered", 2)


def test_a_claim_that_was_claimed_again_after_its_lease_records_nothing(app, client, admin):
    create(client, admin, "http://127.0.0.1:9/hook")
    publish(app)
    with app.app_context():
        first = delivery.claim_next(timeout=1)
        assert delivery.claim_next(timeout=1) is None  # leased
        WebhookDelivery.update(next_attempt_at=dt.datetime.now(UTC)).execute()  # as when the lease ends
        second = delivery.claim_next(timeout=1)
        assert (second.delivery_id, first.attempt, second.attempt) == (first.delivery_id, 1, 2)
        assert delivery.settle(first, sending.Answer(500, error="HTTP 500"), (0,)) == ("lost", None)
        assert WebhookDelivery.get().lease_until is not None  # the second claim's lease holds
        assert delivery.settle(second, sending.Answer(200), (0,)) == ("delivered", None)
        assert delivery.settle(first, sending.Answer(200), (0,)) == ("lost", None)  # no second success
        stored = WebhookDelivery.get()
        assert (stored.status, stored.attempts, stored.last_status) == ("delivered", 2, 200)


def test_sigterm_lets_the_attempt_in_flight_finish(app, client, admin, receiver):
    webhook = create(client, admin, receiver.url)
    receiver.answer(HOLD)
    publish(app)
    worker = flask_cli(app, "webhooks", "deliver", "--poll", "0.1")
    assert receiver.wait_for(1) == 1
    worker.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert worker.poll() is None  # still waiting for the answer
    receiver.release()
    _, log = worker.communicate(timeout=30)
    assert worker.returncode == 0, log
    assert ": delivered" in log and "Traceback" not in log
    [listed] = deliveries(client, admin, webhook["id"])
    assert (listed["status"], listed["attempts"]) == ("delivered", 1)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_worker_outlives_a_database_that_fails(app, client, admin, receiver, tmp_path):
    webhook = create(client, admin, receiver.url)
    publish(app)
    log = tmp_path / "worker.log"
    with sqlite_write_lock(tmp_path / "usage.db"), open(log, "w") as log_file:  # claims fail: SQLITE_BUSY
        worker = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "wsgi", "webhooks", "deliver", "--poll", "0.1"], cwd=ROOT,
            env={**os.environ, "DATABASE_URL": app.config["DATABASE_URL"], "SQLITE_BUSY_TIMEOUT": "50"},
            stderr=log_file)
        ends = time.monotonic() + 20
        while "the database failed" not in log.read_text() and time.monotonic() < ends:
            time.sleep(0.05)
        assert worker.poll() is None and receiver.received == []
    assert receiver.wait_for(1) == 1
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, log.read_text()
    assert "the database failed" in log.read_text() and ": delivered" in log.read_text()
    assert deliveries(client, admin, webhook["id"])[0]["status"] == "delivered"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_bad_settings_stop_the_service_naming_them(database_url):
    for variable, value in [("WEBHOOK_RETRY_DELAYS", "5,soon"), ("WEBHOOK_RETRY_DELAYS", "-1"),
                            ("WEBHOOK_RETRY_DELAYS", ""), ("WEBHOOK_TIMEOUT", "0"), ("WEBHOOK_TIMEOUT", "nan")]:
        with pytest.raises(ConfigurationError, match=variable):
            create_app({"DATABASE_URL": database_url, variable: value})
    result = subprocess.run([sys.executable, "-c", "import wsgi"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "DATABASE_URL": database_url, "WEBHOOK_TIMEOUT": "soon"})
    assert result.returncode != 0 and "WEBHOOK_TIMEOUT" in result.stderr and "Traceback" not in result.stderr
