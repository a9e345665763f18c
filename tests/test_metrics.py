"""GET /metrics: what it counts, who may read it, and counts that add up over gunicorn workers."""
import contextlib
import json
import socket
import urllib.error
import urllib.request
import uuid
from urllib.parse import urlsplit

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from conftest import auth, build_app, gunicorn, sqlite_write_lock

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def samples(text):
    """{(sample name, frozenset of labels): value} of a Prometheus text exposition."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(scraped, name, **labels):
    return scraped.get((name, frozenset(labels.items())), 0.0)


def scrape(client):
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    return samples(response.get_data(as_text=True))


@sqlite_only
def test_only_allowed_addresses_may_read_metrics(app):
    client = app.test_client()
    assert client.get("/metrics").status_code == 200  # the test client is 127.0.0.1
    outside = client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.10"})
    assert outside.status_code == 404
    assert outside.get_json()["message"] == "Nothing at /metrics; the routes are listed at /docs."
    # A client cannot claim to be local: X-Forwarded-For is not read without PROXY_COUNT.
    spoofed = client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"},
                         environ_base={"REMOTE_ADDR": "192.0.2.10"})
    assert spoofed.status_code == 404

    network = create_app({"DATABASE_URL": app.config["DATABASE_URL"], "METRICS_ALLOW": "192.0.2.0/28, ::1"})
    client = network.test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.10"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.16"}).status_code == 404
    assert client.get("/metrics").status_code == 404  # loopback is no longer listed

    # Behind nginx (PROXY_COUNT=1) the address is the one nginx saw, not nginx's own.
    proxied = create_app({"DATABASE_URL": app.config["DATABASE_URL"], "PROXY_COUNT": "1"}).test_client()
    assert proxied.get("/metrics", headers={"X-Forwarded-For": "192.0.2.10"}).status_code == 404
    assert proxied.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 200


def test_database_timeouts_and_errors_are_counted_apart(app, keys, tmp_path, monkeypatch):
    keys.tenant("acme")
    key = keys.key("acme")
    call_id = str(uuid.uuid4())
    record = {"call_id": call_id, "tenant_id": "acme", "operation": "analyze",
              "timestamp": "2026-11-20T09:30:00Z", "call_duration_ms": 5, "model": "m",
              "input_tokens": 1, "output_tokens": 1, "cost_usd": "0", "status": "ok"}
    url = app.config["DATABASE_URL"]
    monkeypatch.setenv("SQLITE_BUSY_TIMEOUT", "200")
    waiting = create_app({"DATABASE_URL": url, "DB_STATEMENT_TIMEOUT": 1}).test_client()
    before = scrape(waiting)
    with lock_held_on(url, call_id):  # the write must wait for a lock past its limit
        response = waiting.post("/v1/usage/calls", json={"calls": [record]}, headers=auth(key))
    assert response.status_code == 503
    down = build_app(f"sqlite:///{tmp_path}/missing-dir/usage.db", tmp_path, migrate=False).test_client()
    assert down.get("/v1/usage", headers=auth(key)).status_code == 503
    after = scrape(down)
    assert value(after, "usage_database_errors_total", kind="timeout") - \
        value(before, "usage_database_errors_total", kind="timeout") == 1
    assert value(after, "usage_database_errors_total", kind="error") - \
        value(before, "usage_database_errors_total", kind="error") == 1


@contextlib.contextmanager
def lock_held_on(url, call_id):
    """SQLite: the database's write lock. PostgreSQL: the unique-index entry
    of (acme, call_id), inserted by a transaction that does not end."""
    if url.startswith("sqlite"):
        with sqlite_write_lock(urlsplit(url).path):
            yield
        return
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO llm_call (call_id, tenant_id, operation, timestamp, call_duration_ms, model, "
            "input_tokens, output_tokens, cost_micro_usd, status, created_at) "
            "VALUES (%s, 'acme', 'analyze', now(), 1, 'm', 1, 1, 0, 'ok', now())", (call_id,))
        try:
            yield
        finally:
            conn.rollback()


def call(call_id, tenant_id=None):
    record = {"call_id": call_id, "operation": "analyze", "timestamp": "2026-11-20T09:30:00Z",
              "call_duration_ms": 10, "model": "gpt-4o", "input_tokens": 3, "output_tokens": 4,
              "cost_usd": "0.000010", "status": "ok"}
    return record | ({"tenant_id": tenant_id} if tenant_id else {})


def send(base, path, key=None, body=None):
    headers = (auth(key) if key else {}) | ({"Content-Type": "application/json"} if body else {})
    request = urllib.request.Request(base + path, headers=headers,
                                     data=json.dumps(body).encode() if body else None)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_counts_from_every_gunicorn_worker_add_up(app, keys, tmp_path):
    keys.tenant("acme")
    keys.tenant("globex")
    keys.tenant("ops", allows_superusers=True)
    tenant_key, superuser_key = keys.key("acme"), keys.key("ops", superuser=True)
    ids = [str(uuid.uuid4()) for _ in range(5)]
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    with gunicorn(app.config["DATABASE_URL"], workers=3, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir)) as base:
        port = urlsplit(base).port
        # A request whose headers are not finished holds the worker that took
        # it: the requests below are served by the others, this one, last, by it.
        with socket.create_connection(("127.0.0.1", port), timeout=30) as held:
            held.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            statuses = [send(base, "/healthz") for _ in range(4)]
            statuses += [send(base, "/v1/usage", tenant_key) for _ in range(3)]
            statuses += [send(base, "/v1/usage") for _ in range(2)]
            statuses += [send(base, "/v1/usage", "usk_0123456789abcdef_" + "a" * 43)]
            statuses += [send(base, "/nope")]
            batch = {"calls": [call(ids[0]), call(ids[1]), call(ids[0])]}  # created 2, duplicate 1
            statuses += [send(base, "/v1/usage/calls", tenant_key, batch)]
            statuses += [send(base, "/v1/usage/calls", tenant_key, batch)]  # duplicate 3
            mixed = {"calls": [call(ids[2], "acme"), call(ids[3], "globex"), call(ids[4], "globex")]}
            statuses += [send(base, "/v1/usage/calls", superuser_key, mixed)]
            held.sendall(b"\r\n")
            assert held.recv(1024).startswith(b"HTTP/1.1 200")
        assert statuses == [200] * 7 + [401] * 3 + [404] + [201] * 3
        with urllib.request.urlopen(base + "/metrics", timeout=30) as response:
            scraped = samples(response.read().decode())
    pids = {name.rsplit("_", 1)[1].removesuffix(".db") for name in
            (p.name for p in metrics_dir.iterdir()) if name.startswith("counter_")}
    assert len(pids) >= 2, pids  # the held worker and at least one other

    requests = "usage_http_requests_total"
    # /healthz: the helper's readiness probe, the four above and the held one.
    assert value(scraped, requests, route="/healthz", method="GET", status="200") == 6
    assert value(scraped, requests, route="/v1/usage", method="GET", status="200") == 3
    assert value(scraped, requests, route="/v1/usage", method="GET", status="401") == 3
    assert value(scraped, requests, route="unmatched", method="GET", status="404") == 1
    assert value(scraped, requests, route="/v1/usage/calls", method="POST", status="201") == 3
    latency = "usage_http_request_duration_seconds"
    assert value(scraped, latency + "_count", route="/healthz", method="GET") == 6
    assert value(scraped, latency + "_bucket", route="/healthz", method="GET", le="+Inf") == 6
    assert value(scraped, latency + "_count", route="/v1/usage", method="GET") == 6
    assert value(scraped, latency + "_sum", route="/v1/usage", method="GET") > 0
    ingested = "usage_calls_ingested_total"
    assert value(scraped, ingested, tenant="acme", result="created") == 3
    assert value(scraped, ingested, tenant="acme", result="duplicate") == 4
    assert value(scraped, ingested, tenant="globex", result="created") == 2
    assert value(scraped, ingested, tenant="globex", result="duplicate") == 0
    assert value(scraped, "usage_auth_failures_total", reason="missing") == 2
    assert value(scraped, "usage_auth_failures_total", reason="invalid") == 1
