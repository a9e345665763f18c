"""Readers never wait for the write lock, and an import never holds it for long.

SQLite has one write lock for the whole file. Authentication may refresh
`last_used_at`, so before these fixes a GET waited behind any writer (a long
`calls import` held the lock for the whole file) and answered 503 once the
busy timeout ran out. PostgreSQL has row locks instead; the same rule holds:
a read does not queue behind a lock it can do without.
"""
import contextlib
import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest

from app.db import database
from app.models import ApiKey, LlmCall
from conftest import auth, sqlite_write_lock
from data import UTC, jsonl, random_records, seeded, to_json

ROOT = Path(__file__).resolve().parent.parent
T0 = dt.datetime(2026, 11, 1, tzinfo=UTC)
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

# Only a guard against a request that hangs forever (PostgreSQL waits on a row
# lock without limit); no test asserts how fast anything is.
HANG_GUARD_S = 30


def sqlite_path(app):
    return app.config["DATABASE_URL"].removeprefix("sqlite:///")


@contextlib.contextmanager
def write_lock_held(app, key_id):
    """Another connection holds what a write of `key_id`'s api_key row needs.

    SQLite: the database's write lock (`BEGIN IMMEDIATE`). PostgreSQL: the
    row lock of that key (`SELECT ... FOR UPDATE`), as a concurrent revocation would.
    """
    url = app.config["DATABASE_URL"]
    if url.startswith("sqlite"):
        with sqlite_write_lock(sqlite_path(app)):
            yield
    else:
        with psycopg.connect(url.replace("postgresql+pool://", "postgresql://")) as conn:
            conn.execute("SELECT 1 FROM api_key WHERE key_id = %s FOR UPDATE", (key_id,))
            try:
                yield
            finally:
                conn.rollback()


def in_thread(func):
    """Run func() in a thread; return its result, or None if still running after the guard."""
    result = []
    thread = threading.Thread(target=lambda: result.append(func()), daemon=True)
    thread.start()
    thread.join(HANG_GUARD_S)
    return result[0] if result else None


def last_used(app, key_id):
    with app.app_context():
        return ApiKey.get_by_id(key_id).last_used_at


def test_a_read_skips_the_last_used_refresh_while_the_lock_is_held(app, client, keys):
    keys.tenant("acme")
    key = keys.key("acme")
    key_id = key.split("_")[1]
    with write_lock_held(app, key_id):
        status = in_thread(lambda: client.get("/v1/usage", headers=auth(key)).status_code)
    assert status is not None, "the request waited for the lock"
    assert status == 200
    assert last_used(app, key_id) is None  # skipped, not waited for

    # With the lock free, the refresh happens.
    assert client.get("/v1/usage", headers=auth(key)).status_code == 200
    assert last_used(app, key_id) is not None


def test_a_skipped_write_leaves_the_connection_settings_as_they_were(app, keys):
    from app.db import write_unless_locked

    keys.tenant("acme")
    key_id = keys.key("acme").split("_")[1]
    setting = ("PRAGMA busy_timeout" if app.config["DATABASE_URL"].startswith("sqlite")
               else "SHOW lock_timeout")

    def rename():
        ApiKey.update(name="renamed").where(ApiKey.key_id == key_id).execute()

    def try_rename():
        """(setting before, written?, setting after) on one connection."""
        with app.app_context():
            before = database.execute_sql(setting).fetchone()
            written = write_unless_locked(rename)
            return before, written, database.execute_sql(setting).fetchone()

    with write_lock_held(app, key_id):
        outcome = in_thread(try_rename)
    assert outcome is not None, "the write waited for the lock"
    before, written, after = outcome
    assert written is False and after == before
    with app.app_context():
        assert ApiKey.get_by_id(key_id).name == "test"
    assert try_rename()[1] is True
    with app.app_context():
        assert ApiKey.get_by_id(key_id).name == "renamed"


@sqlite_only
def test_sqlite_commits_are_durable(app):
    """WAL with synchronous=FULL: a commit is on disk before it is acknowledged."""
    with app.app_context():
        for _ in range(2):  # pragmas are per connection: every new one gets them
            assert database.execute_sql("PRAGMA journal_mode").fetchone() == ("wal",)
            assert database.execute_sql("PRAGMA synchronous").fetchone() == (2,)  # FULL
            database.close()


def test_an_unknown_synchronous_setting_is_refused(tmp_path):
    """SQLite would silently read a typo as NORMAL, losing durability: the
    service refuses to start, with one line naming the setting."""
    result = subprocess.run([sys.executable, "-c", "import wsgi"], cwd=ROOT,
                            env={**os.environ, "SQLITE_SYNCHRONOUS": "ful",
                                 "DATABASE_URL": f"sqlite:///{tmp_path}/usage.db"},
                            capture_output=True, text=True)
    assert result.returncode != 0 and "SQLITE_SYNCHRONOUS" in result.stderr
    assert "Traceback" not in result.stderr


def flask_cli(app, *args, **env):
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT,
        env={**os.environ, "DATABASE_URL": app.config["DATABASE_URL"], **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stored_ids(app):
    """[(tenant_id, call_id as a string)] of every stored call."""
    with app.app_context():
        return [(tenant, str(call_id))
                for tenant, call_id in LlmCall.select(LlmCall.tenant, LlmCall.call_id).tuples()]


def stored_count(app):
    with app.app_context():
        return LlmCall.select().count()


def write_calls(path, count, seed):
    records = random_records(seeded(seed), ["acme", "globex"], count, T0, T0.replace(month=12))
    path.write_text(jsonl(records))
    return {(r["tenant_id"], r["call_id"]) for r in records}


def test_a_crash_mid_import_keeps_the_committed_chunks_and_a_rerun_completes_it(app, keys, runner,
                                                                                 tmp_path):
    keys.tenant("acme")
    keys.tenant("globex")
    path = tmp_path / "calls.jsonl"
    expected = write_calls(path, 10_000, seed=7)
    importer = flask_cli(app, "calls", "import", str(path))
    while stored_count(app) == 0 and importer.poll() is None:
        time.sleep(0.05)
    importer.send_signal(signal.SIGKILL)  # no chance to clean up: as in a crash
    importer.communicate()
    committed = stored_count(app)
    assert 0 < committed < len(expected), "expected a partial import"

    result = runner.invoke(args=["calls", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert (f"Imported: {len(expected) - committed} created, {committed} duplicates."
            in result.output)
    ids = stored_ids(app)
    assert len(ids) == len(expected) and set(ids) == expected


# Short enough that a request queued behind a whole-file import gives up
# (503) long before that import ends; much longer than one import transaction.
BUSY_TIMEOUT_MS = 2000


@pytest.fixture
def short_busy_server(app, monkeypatch, request):
    monkeypatch.setenv("SQLITE_BUSY_TIMEOUT", str(BUSY_TIMEOUT_MS))
    return request.getfixturevalue("live_server")


def http(base, path, key, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data,
                                 headers={**auth(key), "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def write_lock_is_busy(path):
    probe = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        probe.close()


@sqlite_only
def test_reads_and_posts_are_served_during_a_large_import(app, keys, tmp_path, short_busy_server):
    """GETs with never-used keys (they need a refresh of last_used_at) and POSTed
    batches, all while `calls import` writes 30,000 records: none may be 503."""
    keys.tenant("acme")
    keys.tenant("globex")
    readers = [keys.key("acme", name=f"reader{i}") for i in range(20)]
    writer = keys.key("acme", name="writer")
    path = tmp_path / "calls.jsonl"
    expected = write_calls(path, 30_000, seed=11)

    importer = flask_cli(app, "calls", "import", str(path), SQLITE_BUSY_TIMEOUT=str(BUSY_TIMEOUT_MS))
    while not write_lock_is_busy(sqlite_path(app)):  # validation done, inserting now
        assert importer.poll() is None, importer.communicate()
        time.sleep(0.01)

    statuses = {"GET": [], "POST": []}

    def read():
        for key in readers:
            if importer.poll() is not None:
                return
            statuses["GET"].append(http(short_busy_server, "/v1/usage", key))

    def write():
        while importer.poll() is None:
            batch = random_records(seeded(len(statuses["POST"])), ["acme"], 100,
                                   T0, T0.replace(month=12))  # fresh call_ids
            status = http(short_busy_server, "/v1/usage/calls", writer,
                          {"calls": [to_json(rec) for rec in batch]})
            statuses["POST"].append(status)
            if status == 201:
                expected.update((rec["tenant_id"], rec["call_id"]) for rec in batch)

    threads = [threading.Thread(target=read), threading.Thread(target=write)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out, err = importer.communicate()

    assert importer.returncode == 0, err
    assert "Imported: 30000 created, 0 duplicates." in out
    assert statuses["GET"] and statuses["POST"]
    assert set(statuses["GET"]) == {200}, statuses
    assert set(statuses["POST"]) == {201}, statuses
    ids = stored_ids(app)
    assert len(ids) == len(expected) and set(ids) == expected
