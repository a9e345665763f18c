"""Rate limits: failed authentication per client address, requests per key.

Beyond a limit the answer is 429 JSON with Retry-After, and the refused
request sends no statement to the database: counted with the engine's own
hook on the connection the request uses (sqlite3's trace callback, libpq's
protocol trace), not a mock. Counts live in memory by default and in Redis
with REDIS_URL; tests/test_rate_limits_shared.py shows Redis's counts shared
by gunicorn workers.
"""
import contextlib
import tempfile

import pytest
from peewee import SqliteDatabase
from psycopg import pq

from app import create_app
from app.db import database
from conftest import auth

LIMIT = "5 per minute"  # long enough that no count leaves the window during a test
WRONG_KEY = "usk_0123456789abcdef_" + "A" * 43


@contextlib.contextmanager
def statements_sent(app):
    """Yields a function counting the statements sent so far on the
    connection that the next request in this thread will use."""
    db = database.obj
    db.connect(reuse_if_open=True)
    conn = db.connection()
    if isinstance(db, SqliteDatabase):
        sent = []
        conn.set_trace_callback(sent.append)
        yield lambda: len(sent)
        with contextlib.suppress(Exception):  # the request closed it
            conn.set_trace_callback(None)
        return
    with tempfile.TemporaryFile() as trace:
        conn.pgconn.trace(trace.fileno())
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)

        def count():
            trace.seek(0)
            return sum(1 for line in trace.read().decode().splitlines()
                       if line.startswith("F\t") and line.split("\t")[2] in ("Query", "Execute"))

        yield count
        conn.pgconn.untrace()


def app_with(app, **settings):
    """Another app on the test's (migrated) database, with `settings`."""
    return create_app({"DATABASE_URL": app.config["DATABASE_URL"], "TESTING": True, **settings})


@pytest.fixture
def limited(app):
    """The app with an auth-failure limit of 5 per minute."""
    return app_with(app, RATE_LIMIT_AUTH_FAILURES=LIMIT)


def fail(client, times, **kwargs):
    return [client.get("/v1/usage", headers=auth(WRONG_KEY), **kwargs).status_code for _ in range(times)]


def test_failed_authentications_beyond_the_limit_get_429_without_a_query(limited, keys):
    client = limited.test_client()
    keys.tenant("acme")
    good = keys.key("acme")
    assert fail(client, 5) == [401] * 5

    with statements_sent(limited) as refused_count:
        response = client.get("/v1/usage", headers=auth(WRONG_KEY) | {"X-Request-ID": "rl-1"})
        refused_statements = refused_count()
    assert response.status_code == 429
    assert refused_statements == 0
    body = response.get_json()
    assert body["code"] == 429 and body["status"] == "Too Many Requests" and body["request_id"] == "rl-1"
    assert body["message"].startswith("Too many failed authentications from 127.0.0.1 (limit: 5 per minute)")
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    # Over the limit, even a good key is refused: telling it apart would cost the query.
    assert client.get("/v1/usage", headers=auth(good)).status_code == 429
    # Routes that need no key are never limited; another address has its own count.
    assert client.get("/healthz").status_code == 200
    other = {"environ_base": {"REMOTE_ADDR": "192.0.2.7"}}
    assert client.get("/v1/usage", headers=auth(good), **other).status_code == 200
    assert fail(client, 5, **other) == [401] * 5
    assert fail(client, 1, **other) == [429]


def test_a_failed_authentication_costs_a_query_so_the_hook_can_tell(limited):
    """The control of the test above: the same hook sees the key lookup of a 401."""
    client = limited.test_client()
    with statements_sent(limited) as count:
        assert client.get("/v1/usage", headers=auth(WRONG_KEY)).status_code == 401
        assert count() >= 1


def test_only_failures_count(limited, keys):
    client = limited.test_client()
    keys.tenant("acme")
    good = keys.key("acme")
    for _ in range(3):
        assert client.get("/v1/usage", headers=auth(good)).status_code == 200
    assert fail(client, 4) == [401] * 4
    for _ in range(3):
        assert client.get("/v1/usage", headers=auth(good)).status_code == 200
    assert fail(client, 2) == [401, 429]  # the 5th failure is allowed, the 6th is not


def test_x_forwarded_for_is_ignored_unless_proxies_are_trusted(app):
    for proxies in (0, 1):
        client = app_with(app, RATE_LIMIT_AUTH_FAILURES=LIMIT, PROXY_COUNT=proxies).test_client()
        # A client that varies X-Forwarded-For: without a trusted proxy the
        # header is not read, and all five failures count for its address.
        statuses = [client.get("/v1/usage", headers=auth(WRONG_KEY) | {"X-Forwarded-For": f"198.51.100.{n}"})
                    .status_code for n in range(6)]
        if proxies == 0:
            assert statuses == [401] * 5 + [429]
        else:  # behind one proxy, each is the address that proxy saw: six addresses, one failure each
            assert statuses == [401] * 6
            # What a client writes to the left of the proxy's entry is not believed.
            spoofed = [client.get("/v1/usage", headers=auth(WRONG_KEY) | {
                "X-Forwarded-For": f"203.0.113.{n}, 198.51.100.77"}).status_code for n in range(6)]
            assert spoofed == [401] * 5 + [429]


def test_per_key_limit(app, keys):
    """RATE_LIMIT_PER_KEY counts a key's authenticated requests over all routes."""
    keys.tenant("acme")
    first, second = keys.key("acme"), keys.key("acme")
    limited = app_with(app, RATE_LIMIT_PER_KEY="3 per minute")
    client = limited.test_client()
    # Attempts with the first key's id and a wrong secret use up none of its allowance.
    key_id = first.split("_")[1]
    impostor = f"usk_{key_id}_{'B' * 43}"
    assert [client.get("/v1/usage", headers=auth(impostor)).status_code for _ in range(3)] == [401] * 3
    assert client.get("/v1/usage", headers=auth(first)).status_code == 200
    assert client.get("/v1/me", headers=auth(first)).status_code == 200
    assert client.get("/v1/usage/series", headers=auth(first)).status_code == 200
    with statements_sent(limited) as count:
        refused = client.get("/v1/usage", headers=auth(first))
        refused_statements = count()
    assert refused.status_code == 429 and refused_statements == 0
    assert "This key's request limit (3 per minute)" in refused.get_json()["message"]
    assert int(refused.headers["Retry-After"]) >= 1
    assert client.get("/v1/usage", headers=auth(second)).status_code == 200


def test_per_key_limit_is_off_by_default(client, keys):
    keys.tenant("acme")
    key = keys.key("acme")
    assert all(client.get("/v1/me", headers=auth(key)).status_code == 200 for _ in range(60))


def test_openapi_documents_429_with_retry_after_wherever_a_key_is_checked(client):
    spec = client.get("/openapi.json").get_json()
    checked = 0
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            responses = operation["responses"]
            if "401" in responses:
                checked += 1
                assert "429" in responses, (method, path)
                assert "Retry-After" in responses["429"]["headers"], (method, path)
            else:
                assert operation.get("security") == [] and "429" not in responses, (method, path)
    assert checked >= 12
    assert "RATE_LIMIT_PER_KEY" in spec["info"]["description"]
