"""Fixtures: a fresh app and database per test, on SQLite and on PostgreSQL.

Every storage test runs twice: on a SQLite file in a temporary folder, and on
the PostgreSQL database named by TEST_DATABASE_URL (its `public` schema is
dropped and re-created for each test). Without TEST_DATABASE_URL the
PostgreSQL runs are skipped, unless REQUIRE_POSTGRES=1 (as in CI), which turns
the skip into a failure, and the end of the run says so in one line
(`pytest_terminal_summary`). `make test-pg` runs everything on a PostgreSQL
database that it creates and drops. The schema always comes from the
migrations.
"""
import contextlib
import datetime as dt
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest

from app import accounts, create_app
from app.keys import new_key, secret_digest
from app.models import Tenant
from app.db import database
from app.migrate import _router, upgrade

BACKENDS = ["sqlite", "postgresql"]
ROOT = Path(__file__).resolve().parent.parent


def _reset_postgres(url):
    conninfo = url.replace("postgresql+pool://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path):
    return backend_url(request.param, tmp_path)


def backend_url(backend, folder):
    """A fresh database of `backend`: a SQLite file in `folder`, or the
    PostgreSQL database of TEST_DATABASE_URL with its schema reset."""
    if backend == "sqlite":
        return f"sqlite:///{folder}/usage.db"
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail("REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set")
        pytest.skip(POSTGRES_SKIPPED)
    _reset_postgres(url)
    return url


POSTGRES_SKIPPED = "TEST_DATABASE_URL is not set: PostgreSQL run skipped"


@pytest.hookimpl(wrapper=True, tryfirst=True)  # outermost: after pytest's short summary
def pytest_terminal_summary(terminalreporter):
    """After pytest's own summary: one line on the PostgreSQL runs skipped for
    want of TEST_DATABASE_URL, if any were, and how to run them."""
    yield
    stats = terminalreporter.stats
    skipped = {report.nodeid for report in stats.get("skipped", [])
               if isinstance(report.longrepr, tuple) and "TEST_DATABASE_URL is not set" in report.longrepr[2]}
    if skipped and not os.environ.get("TEST_DATABASE_URL"):
        run = {report.nodeid for outcome in ("passed", "failed", "skipped", "error", "xfailed", "xpassed")
               for report in stats.get(outcome, [])}
        terminalreporter.write_line(
            f"{len(skipped)} of {len(run)} tests skipped: they run on PostgreSQL, and TEST_DATABASE_URL "
            "is not set. `make test-pg` runs them on a database of its own (created on PG_URL, "
            "postgresql://postgres@127.0.0.1:5432 by default, and dropped after).", yellow=True, bold=True)


def build_app(database_url, tmp_path, migrate=True, **config):
    app = create_app({"DATABASE_URL": database_url, "TESTING": True, **config})
    app.instance_path = str(tmp_path)
    if migrate:
        with app.app_context():
            upgrade(database.obj)
    return app


def roll_back_through(db, migration):
    """Roll back every migration from the newest down to `migration`, included."""
    router = _router(db)
    while migration in router.done:
        router.rollback()


@pytest.fixture
def app(request, database_url, tmp_path):
    """Settings of a test's `app_config` mark go to create_app."""
    marker = request.node.get_closest_marker("app_config")
    app = build_app(database_url, tmp_path, **(marker.kwargs if marker else {}))
    yield app
    target = database.obj
    if hasattr(target, "close_all"):
        target.close_all()
    elif not target.is_closed():
        target.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


class Keys:
    """Create tenants and keys through the service layer; returns key strings."""

    def __init__(self, app):
        self.app = app

    def tenant(self, tenant_id, allows_superusers=False):
        with self.app.app_context():
            accounts.create_tenant(tenant_id, allows_superusers=allows_superusers)
        return tenant_id

    def key(self, tenant_id, superuser=None, name="test", scopes=None, expires_at=None):
        with self.app.app_context():
            return accounts.create_key(tenant_id, name, superuser, scopes, expires_at)[1]

    def tenant_and_key_before_scopes(self, tenant_id, superuser=False):
        """A tenant and its key as the code before migration 009 stored them
        (no scopes, no expiry, no audit event), for tests that start from an
        older schema. Returns the key string."""
        key_id, secret, key_string = new_key()
        with self.app.app_context():
            Tenant.create(tenant_id=tenant_id, name=tenant_id, allows_superusers=superuser)
            database.execute_sql(
                "INSERT INTO api_key (key_id, tenant_id, name, is_superuser, secret_sha256, created_at) "
                "VALUES (%s, %s, 'test', %s, %s, %s)".replace("%s", database.param),
                (key_id, tenant_id, superuser, secret_digest(secret), dt.datetime(2026, 1, 1)))
        return key_string


@pytest.fixture
def keys(app):
    return Keys(app)


def auth(key):
    return {"Authorization": f"Bearer {key}"}


@contextlib.contextmanager
def sqlite_write_lock(path):
    """Another connection holds the SQLite database's one write lock (BEGIN IMMEDIATE)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=0)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def gunicorn(database_url, workers=3, log=None, **env):
    """gunicorn serving wsgi:app on a free port with `env` added; yields its base URL.

    It reads gunicorn.conf.py (started in the repository's folder), as in
    production, and its address from BIND, as there. Its log (standard error: a line per request) goes to the
    file `log`, or a temporary one: never a pipe that nobody reads, which
    would stall the workers once full.
    """
    port = free_port()
    with contextlib.ExitStack() as stack:
        log_file = (open(log, "w+b") if log is not None else tempfile.TemporaryFile())
        stack.enter_context(log_file)
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--timeout", "120", "wsgi:app"],
            cwd=ROOT, env={**os.environ, "DATABASE_URL": database_url, "BIND": f"127.0.0.1:{port}", **env},
            stdout=subprocess.DEVNULL, stderr=log_file,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    urllib.request.urlopen(base + "/healthz", timeout=1).close()
                    break
                except OSError:
                    if server.poll() is not None:
                        log_file.seek(0)
                        raise RuntimeError(log_file.read().decode(errors="replace")[-5000:])
                    time.sleep(0.1)
            # Every worker forked, not just the one that answered: gunicorn
            # spawns them one by one, up to 0.1 s apart.
            for _ in range(100):
                if os.pread(log_file.fileno(), 1 << 20, 0).count(b"Booting worker with pid") >= workers:
                    break
                time.sleep(0.05)
            yield base
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


@pytest.fixture
def live_server(app):
    """gunicorn with three workers on the test database; yields its base URL."""
    with gunicorn(app.config["DATABASE_URL"]) as base:
        yield base
