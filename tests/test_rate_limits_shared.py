"""Rate limits in Redis (REDIS_URL) are shared by every worker; in memory they are not.

Uses the Redis at 127.0.0.1:6379, database 12, under a key prefix of its own
that it deletes afterwards (skipped without Redis, except in CI).
"""
import os
import socket
import urllib.error
import urllib.request
import uuid
from urllib.parse import urlsplit

import pytest
import redis

from app import create_app
from conftest import free_port, gunicorn

REDIS = "redis://127.0.0.1:6379/12"
LIMIT = "5 per minute"
WRONG = "usk_0123456789abcdef_" + "A" * 43
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def redis_prefix():
    """A key prefix of this test's own, its keys deleted afterwards."""
    client = redis.Redis.from_url(REDIS, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        if os.environ.get("CI") or os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail(f"Redis at {REDIS} does not answer: {error}")
        pytest.skip(f"Redis at {REDIS} does not answer: {error}")
    prefix = f"prod-test-{uuid.uuid4().hex}"
    yield prefix
    for key in client.scan_iter(match=f"*{prefix}*"):
        client.delete(key)
    client.close()


def attempt(client):
    return client.get("/v1/usage", headers={"X-API-Key": WRONG}).status_code


@sqlite_only
def test_two_apps_on_one_redis_share_the_count(app, redis_prefix):
    def instance(**settings):
        return create_app({"DATABASE_URL": app.config["DATABASE_URL"], "RATE_LIMIT_AUTH_FAILURES": LIMIT,
                           **settings}).test_client()

    first, second = instance(REDIS_URL=REDIS, REDIS_KEY_PREFIX=redis_prefix), \
        instance(REDIS_URL=REDIS, REDIS_KEY_PREFIX=redis_prefix)
    assert [attempt(first) for _ in range(3)] + [attempt(second) for _ in range(2)] == [401] * 5
    assert attempt(first) == 429 and attempt(second) == 429
    stored = redis.Redis.from_url(REDIS).keys(f"*{redis_prefix}*")
    assert stored and all(b"auth-failures" in key for key in stored), stored
    # The control: in memory, each app counts alone.
    first, second = instance(), instance()
    assert [attempt(first) for _ in range(3)] + [attempt(second) for _ in range(3)] == [401] * 6


@sqlite_only
def test_a_redis_that_does_not_answer_leaves_the_service_answering(app, keys):
    keys.tenant("acme")
    key = keys.key("acme")
    client = create_app({"DATABASE_URL": app.config["DATABASE_URL"], "RATE_LIMIT_AUTH_FAILURES": LIMIT,
                         "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}).test_client()
    assert [attempt(client) for _ in range(7)] == [401] * 7  # unlimited, but no 500
    assert client.get("/v1/usage", headers={"X-API-Key": key}).status_code == 200


def status(base):
    try:
        with urllib.request.urlopen(urllib.request.Request(base + "/v1/usage", headers={"X-API-Key": WRONG}),
                                    timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def held_request(port):
    """A failed authentication whose last line is not sent yet: it holds the worker that accepted it."""
    held = socket.create_connection(("127.0.0.1", port), timeout=30)
    held.sendall(f"GET /v1/usage HTTP/1.1\r\nHost: x\r\nX-API-Key: {WRONG}\r\n".encode())
    return held


def finish(held):
    with held:
        held.sendall(b"\r\n")
        return int(held.recv(1024).split()[1])


@sqlite_only
@pytest.mark.parametrize("storage", ["redis", "memory"])
def test_gunicorn_workers_share_the_count_in_redis(app, redis_prefix, storage):
    """Five failures spread over three workers (1, 1 and 3): with Redis the
    sixth is refused whichever worker takes it; in memory no worker has five,
    and the next two are allowed whichever workers take them."""
    env = {"RATE_LIMIT_AUTH_FAILURES": LIMIT}
    if storage == "redis":
        env |= {"REDIS_URL": REDIS, "REDIS_KEY_PREFIX": redis_prefix}
    with gunicorn(app.config["DATABASE_URL"], workers=3, **env) as base:
        port = urlsplit(base).port
        first, second = held_request(port), held_request(port)  # two workers held
        served_by_the_third = [status(base) for _ in range(3)]
        assert served_by_the_third + [finish(first), finish(second)] == [401] * 5
        after = [status(base) for _ in range(3)]
    if storage == "redis":
        assert after == [429] * 3
    else:  # a third worker with 3 failures may take all of them: only two are sure to pass
        assert after[:2] == [401] * 2
