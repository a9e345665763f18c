"""A PostgreSQL that stops answering (frozen, not crashed) still gets JSON answers.

Reported: with PostgreSQL's processes stopped by SIGSTOP, `/readyz` and
`/v1/usage` hung until gunicorn killed the worker, a POST got gunicorn's HTML
500, and `/healthz` waited behind them. A frozen server still completes TCP
handshakes and ACKs (the kernel does that), so neither keepalives nor the
server's own `statement_timeout` end the wait: the service must keep its own
deadlines.

These tests start a throwaway PostgreSQL cluster of their own (never the shared
one) and freeze every process of it with SIGSTOP. The cluster is always thawed
and removed afterwards, also when a test fails. Without `initdb` the tests are
skipped, except in CI (CI or REQUIRE_POSTGRES=1), where that is a failure.
"""
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from peewee import OperationalError

from app import create_app
from app.db import database
from conftest import Keys, _reset_postgres, build_app, gunicorn

ROOT = Path(__file__).resolve().parent.parent
DATABASE_DOWN = {"code": 503, "status": "Service Unavailable",
                 "message": "The database does not answer; retry later."}

# Only a guard against hanging for ever; the service answers far sooner.
PATIENCE = 30
# Short limits keep the tests quick (psycopg's connect timeout has a 2 s minimum).
SHORT_LIMITS = {"DB_CONNECT_TIMEOUT": "2", "DB_STATEMENT_TIMEOUT": "2", "DB_STATISTICS_TIMEOUT": "3"}


def _without_request_id(response):
    """The JSON body but its request id (which every error body has)."""
    body = response.get_json()
    assert body.pop("request_id") == response.headers["X-Request-ID"]
    return body


def _in_ci():
    return (os.environ.get("CI", "").lower() not in ("", "0", "false")
            or os.environ.get("REQUIRE_POSTGRES") == "1")


def _postgres_bin():
    """The directory of initdb/pg_ctl/postgres, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = found[-1] if found else shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class Cluster:
    """A PostgreSQL cluster in a temporary directory, on a free port of 127.0.0.1.

    As root it runs as the `postgres` OS user (initdb refuses root).
    """

    def __init__(self, bindir):
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="usage-stalled-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.as_owner = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self.as_owner = ["runuser", "-u", "postgres", "--"]

    def _run(self, tool, *args):
        subprocess.run([*self.as_owner, str(self.bindir / tool), *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)

    def start(self):
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} "
                   "-c fsync=off -c full_page_writes=off")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"),
                  "-w", "-t", "30", "start")

    def stop(self):
        """Thaw, stop and delete the cluster; never raises."""
        try:
            self.signal(signal.SIGCONT)
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except Exception:
            postmaster = self.postmaster_pid()
            if postmaster:
                _kill(postmaster, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)

    def postmaster_pid(self):
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def signal(self, signum):
        """Send `signum` to the postmaster first (so it forks no more), then to its children."""
        postmaster = self.postmaster_pid()
        if postmaster is None:
            return
        _kill(postmaster, signum)
        for pid in _children(postmaster):
            _kill(pid, signum)

    @contextmanager
    def frozen(self):
        self.signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.signal(signal.SIGCONT)


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _children(parent):
    children = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent:
            children.append(int(stat.split("/")[2]))
    return children


def _kill(pid, signum):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def cluster():
    bindir = _postgres_bin()
    if bindir is None:
        if _in_ci():
            pytest.fail("initdb not found (looked in /usr/lib/postgresql/*/bin and PATH)")
        pytest.skip("initdb not found: install PostgreSQL server binaries to run these tests")
    cluster = Cluster(bindir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(cluster):
    _reset_postgres(cluster.url)
    return cluster.url


@pytest.fixture
def make_app(pg_url, tmp_path):
    """create_app on the throwaway cluster with extra config; pools closed afterwards."""

    def make(**config):
        app = create_app({"DATABASE_URL": pg_url, "TESTING": True, **config})
        app.instance_path = str(tmp_path)
        return app

    build_app(pg_url, tmp_path)  # the schema, from the migrations
    database.obj.close_all()
    yield make
    database.obj.close_all()


def _within(seconds, function):
    """Run `function` in a thread; (result, exception, elapsed). A call still
    running after `seconds` is reported as a TimeoutError (and left to finish)."""
    outcome = {}

    def run():
        try:
            outcome["result"] = function()
        except BaseException as error:  # reported to the test, not swallowed
            outcome["error"] = error

    started = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    elapsed = time.monotonic() - started
    if worker.is_alive():
        return None, TimeoutError(f"still waiting after {seconds} s"), elapsed
    return outcome.get("result"), outcome.get("error"), elapsed


def call():
    return {"call_id": str(uuid.uuid4()), "operation": "analyze",
            "timestamp": "2026-11-20T09:30:00+01:00", "call_duration_ms": 1840,
            "model": "gpt-4o-mini", "input_tokens": 2100, "output_tokens": 310,
            "cost_usd": "0.001", "status": "ok"}


# --- on an open connection: statements, commits and rollbacks have a deadline ---

def _statement(cluster):
    database.connect()
    cluster.signal(signal.SIGSTOP)
    database.execute_sql("SELECT 1")


def _commit(cluster):
    with database.atomic():
        database.execute_sql("SELECT 1")
        cluster.signal(signal.SIGSTOP)


def _rollback(cluster):
    with database.atomic():
        database.execute_sql("SELECT 1")
        cluster.signal(signal.SIGSTOP)
        raise RuntimeError("rolled back on purpose: only a failed ROLLBACK raises OperationalError")


def _run_closing(operation, cluster):
    """Run one operation in this thread's own connection and hand it back to the pool."""
    try:
        operation(cluster)
    finally:
        database.close()


@pytest.mark.parametrize("operation", [_statement, _commit, _rollback], ids=["statement", "commit", "rollback"])
def test_frozen_server_fails_an_open_connection_which_the_pool_then_discards(cluster, make_app, operation):
    app = make_app(DB_CONNECT_TIMEOUT=2, DB_STATEMENT_TIMEOUT=2)
    with app.app_context():
        try:
            _, error, elapsed = _within(PATIENCE, lambda: _run_closing(operation, cluster))
        finally:
            cluster.signal(signal.SIGCONT)
        print(f"\n{operation.__name__} on a frozen server: {error!r} after {elapsed:.2f} s")
        assert isinstance(error, OperationalError), f"got {error!r} after {elapsed:.1f} s"
        assert database.obj._connections == [] and database.obj._in_use == {}
        assert database.execute_sql("SELECT 1").fetchone() == (1,)  # a new connection
        database.close()


# --- slow statements are cancelled by PostgreSQL's statement_timeout ---

@contextmanager
def _locked_calls_table(url, seconds):
    """Hold an ACCESS EXCLUSIVE lock on llm_call for `seconds`, from another connection."""
    holder = psycopg.connect(url)
    holder.execute("LOCK TABLE llm_call IN ACCESS EXCLUSIVE MODE")
    release = threading.Timer(seconds, holder.rollback)
    release.start()
    try:
        yield
    finally:
        release.cancel()
        holder.close()


def _backend_pid():
    return database.execute_sql("SELECT pg_backend_pid()").fetchone()[0]


def test_slow_statements_are_cancelled_by_their_own_limits_and_the_connection_is_kept(pg_url, make_app):
    """Writes get DB_STATEMENT_TIMEOUT (1 s), statistics DB_STATISTICS_TIMEOUT (4 s):
    a 2.5 s lock wait is cancelled for a write but not for statistics."""
    app = make_app(DB_CONNECT_TIMEOUT=2, DB_STATEMENT_TIMEOUT=1, DB_STATISTICS_TIMEOUT=4)
    keys = Keys(app)
    key = keys.key(keys.tenant("acme"))
    client = app.test_client()
    headers = {"X-API-Key": key}
    with app.app_context():
        backend = _backend_pid()
        database.close()

    with _locked_calls_table(pg_url, 2.5):
        response = client.post("/v1/usage/calls", json={"calls": [call()]}, headers=headers)
    assert (response.status_code, _without_request_id(response)) == (503, DATABASE_DOWN)

    with _locked_calls_table(pg_url, 2.5):
        response = client.get("/v1/usage", headers=headers)
    assert response.status_code == 200, response.get_json()

    with _locked_calls_table(pg_url, 6):
        started = time.monotonic()
        response = client.get("/v1/usage", headers=headers)
        elapsed = time.monotonic() - started
    assert (response.status_code, _without_request_id(response)) == (503, DATABASE_DOWN)
    assert elapsed < 6

    response = client.post("/v1/usage/calls", json={"calls": [call()]}, headers=headers)
    assert response.status_code == 201
    with app.app_context():
        assert _backend_pid() == backend  # the pooled connection survived each cancel
        # The statistics limit was SET LOCAL: it ended with its transaction.
        assert database.execute_sql("SHOW statement_timeout").fetchone() == ("1s",)
        database.close()


def test_statistics_on_sqlite_end_at_the_statistics_limit(tmp_path):
    """SQLite has no statement_timeout; the statistics limit interrupts it as well."""
    url = f"sqlite:///{tmp_path}/usage.db"
    app = build_app(url, tmp_path)
    keys = Keys(app)
    headers = {"X-API-Key": keys.key(keys.tenant("acme"))}
    client = app.test_client()
    calls = {"calls": [call() for _ in range(1000)]}
    assert client.post("/v1/usage/calls", json=calls, headers=headers).status_code == 201
    assert client.get("/v1/usage", headers=headers).status_code == 200

    impatient = create_app({"DATABASE_URL": url, "TESTING": True, "DB_STATISTICS_TIMEOUT": 1e-6})
    response = impatient.test_client().get("/v1/usage", headers=headers)
    assert (response.status_code, _without_request_id(response)) == (503, DATABASE_DOWN)


# --- gunicorn in front of a frozen server: every route answers JSON ---

def _gunicorn(url, **env):
    """One sync worker (so the pool it warms is the one the next request uses)."""
    return gunicorn(url, workers=1, **env)


def _request(base, method, path, key=None, body=None, timeout=PATIENCE):
    """(status, content type, JSON body or text, seconds); status None if no response."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["X-API-Key"] = key
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, ctype, raw = response.status, response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as error:
        status, ctype, raw = error.code, error.headers.get_content_type(), error.read()
    except OSError as error:  # reset, closed without a response, timed out
        return None, None, repr(error), time.monotonic() - started
    elapsed = time.monotonic() - started
    try:
        return status, ctype, json.loads(raw), elapsed
    except ValueError:
        return status, ctype, raw.decode(errors="replace")[:200], elapsed


def test_every_route_answers_json_while_postgresql_is_frozen(cluster, pg_url, tmp_path):
    app = build_app(pg_url, tmp_path)
    keys = Keys(app)
    key = keys.key(keys.tenant("acme"))
    database.obj.close_all()

    readyz_down = {"code": 503, "status": "Service Unavailable"}
    routes = [
        ("GET", "/readyz", None, 503, readyz_down),
        ("GET", "/v1/usage", None, 503, DATABASE_DOWN),
        ("POST", "/v1/usage/calls", {"calls": [call()]}, 503, DATABASE_DOWN),
    ]
    timings = []
    with _gunicorn(pg_url, **SHORT_LIMITS) as base:
        for method, path, body, status, expected in routes:
            # A request that succeeds leaves an idle connection in the worker's pool.
            assert _request(base, "GET", "/v1/usage", key)[0] == 200
            with cluster.frozen():
                for connection in ("pooled", "fresh"):
                    got_status, ctype, got, elapsed = _request(base, method, path, key, body)
                    timings.append((method, path, connection, round(elapsed, 2), got_status))
                    assert (got_status, ctype) == (status, "application/json"), (connection, got)
                    assert {**got, **expected} == got, (connection, got)
                    if path == "/readyz":
                        assert got["message"].startswith("Database unavailable"), got
                healthz = _request(base, "GET", "/healthz")
                timings.append(("GET", "/healthz", "frozen", round(healthz[3], 2), healthz[0]))
                assert healthz[:3] == (200, "application/json", {"status": "ok"})
        print("\nresponse times while frozen:", *timings, sep="\n  ")

        assert _request(base, "GET", "/readyz")[:3] == (200, "application/json", {"status": "ready"})
        assert _request(base, "GET", "/v1/usage", key)[0] == 200
        created = _request(base, "POST", "/v1/usage/calls", key, {"calls": [call()]})
        assert created[:3] == (201, "application/json", {"received": 1, "created": 1, "duplicates": 0})
        # The four 503s of /v1/usage and the POST, pooled and fresh, were time limits running out.
        with urllib.request.urlopen(base + "/metrics", timeout=PATIENCE) as response:
            metrics = response.read().decode()
        assert 'usage_database_errors_total{kind="timeout"} 4.0' in metrics, metrics
        assert 'kind="error"' not in metrics
