"""The command line: schema, tenants, keys and JSON Lines import."""
import datetime as dt
import io
import json
import os
import pty
import subprocess
import sys
from decimal import Decimal

from peewee import OperationalError

from app.cli import announce_database
from app.models import ApiKey, LlmCall
from conftest import ROOT, free_port
from data import UTC, jsonl, record, to_json

T0 = dt.datetime(2026, 11, 1, tzinfo=UTC)


def invoke(runner, *args, input=None):
    return runner.invoke(args=list(args), input=input)


def test_db_upgrade_is_safe_to_repeat(runner):
    result = invoke(runner, "db", "upgrade")  # the fixture already migrated
    assert result.exit_code == 0 and "up to date" in result.output


def test_tenants_create_and_list(runner):
    assert invoke(runner, "tenants", "create", "acme", "--name", "Acme Corp").exit_code == 0
    assert invoke(runner, "tenants", "create", "ops", "--allow-superusers").exit_code == 0
    lines = invoke(runner, "tenants", "list").output.splitlines()
    assert lines == ["acme\t-\tAcme Corp", "ops\tsuperusers\tops"]
    again = invoke(runner, "tenants", "create", "acme")
    assert again.exit_code != 0 and "already exists" in again.output
    bad = invoke(runner, "tenants", "create", "Bad Id")
    assert bad.exit_code != 0 and "Invalid tenant_id" in bad.output


def test_keys_create_prints_key_last_and_stores_only_a_hash(app, runner, client):
    invoke(runner, "tenants", "create", "acme")
    result = invoke(runner, "keys", "create", "--tenant", "acme", "--name", "dashboard")
    assert result.exit_code == 0
    key = result.output.splitlines()[-1]
    assert key.startswith("usk_")
    key_id, secret = key.split("_", 2)[1:]
    with app.app_context():
        stored = ApiKey.get_by_id(key_id)
        assert secret not in repr(stored.__data__)
    assert client.get("/v1/usage", headers={"X-API-Key": key}).status_code == 200
    listing = invoke(runner, "keys", "list", "--tenant", "acme").output
    assert listing.startswith(key_id) and secret not in listing


def test_superuser_key_needs_a_tenant_that_allows_it(runner):
    invoke(runner, "tenants", "create", "acme")
    result = invoke(runner, "keys", "create", "--tenant", "acme", "--name", "x", "--superuser")
    assert result.exit_code != 0
    assert "does not allow superuser keys" in result.output
    unknown = invoke(runner, "keys", "create", "--tenant", "nobody", "--name", "x")
    assert unknown.exit_code != 0 and "Unknown tenant" in unknown.output


def test_keys_revoke(runner):
    invoke(runner, "tenants", "create", "acme")
    key_id = invoke(runner, "keys", "create", "--tenant", "acme", "--name", "x").output.splitlines()[-1].split("_")[1]
    assert invoke(runner, "keys", "revoke", key_id).exit_code == 0
    assert "revoked" in invoke(runner, "keys", "list").output
    assert invoke(runner, "keys", "revoke", "0000000000000000").exit_code != 0


def count_calls(app):
    with app.app_context():
        return LlmCall.select().count()


def test_import_then_reimport_counts_duplicates(app, runner, tmp_path):
    invoke(runner, "tenants", "create", "acme")
    records = [record("acme", T0 + dt.timedelta(minutes=i), cost="0.000001") for i in range(1200)]
    path = tmp_path / "calls.jsonl"
    path.write_text(jsonl(records))
    result = invoke(runner, "calls", "import", str(path))
    assert result.exit_code == 0 and "1200 created, 0 duplicates" in result.output
    result = invoke(runner, "calls", "import", "-", input=jsonl(records[:10] + [record("acme", T0)]))
    assert result.exit_code == 0 and "1 created, 10 duplicates" in result.output
    assert count_calls(app) == 1201
    with app.app_context():
        stored = LlmCall.select().order_by(LlmCall.timestamp).first()
        assert stored.timestamp == T0 and stored.cost_micro_usd == 1


def test_import_with_any_bad_line_imports_nothing(app, runner):
    invoke(runner, "tenants", "create", "acme")
    good = to_json(record("acme", T0))
    lines = [
        json.dumps(good),
        json.dumps({**to_json(record("acme", T0)), "cost_usd": "0.0000001"}),
        "{not json",
        json.dumps({**to_json(record("acme", T0)), "timestamp": "2026-11-01T00:00:00"}),
        json.dumps({**to_json(record("nobody", T0))}),
        json.dumps({**to_json(record("acme", T0)), "status": "error"}),
        json.dumps({**to_json(record("acme", T0)), "error_class": "Boom"}),
        json.dumps({k: v for k, v in to_json(record("acme", T0)).items() if k != "tenant_id"}),
        json.dumps({**to_json(record("acme", T0)), "input_tokens": -1}),
        json.dumps({**to_json(record("acme", T0)), "surprise": 1}),
    ]
    result = invoke(runner, "calls", "import", "-", input="\n".join(lines) + "\n")
    assert result.exit_code != 0
    out = result.output
    for number, reason in [(2, "cost_usd: At most 6 decimal places"), (3, "not valid JSON"),
                           (4, "timestamp"), (5, "tenant_id: Unknown tenant 'nobody'"),
                           (6, "error_class: Required when status is 'error'"),
                           (7, "error_class: Must be absent"), (8, "tenant_id: Missing data"),
                           (9, "input_tokens"), (10, "surprise: Unknown field")]:
        assert f"line {number}: {reason}" in out, (number, out)
    assert "line 1:" not in out
    assert "9 invalid line(s)" in out
    assert count_calls(app) == 0


def test_import_accepts_numbers_and_decimal_strings_exactly(app, runner):
    invoke(runner, "tenants", "create", "acme")
    base = to_json(record("acme", T0))
    lines = [json.dumps({**base, "call_id": f"00000000-0000-4000-8000-00000000000{i}"})
             .replace(f'"cost_usd": "{base["cost_usd"]}"', f'"cost_usd": {cost}')
             for i, cost in enumerate(["0.1", "0.2", '"0.300000"', "1e-6"])]
    result = invoke(runner, "calls", "import", "-", input="\n".join(lines))
    assert result.exit_code == 0, result.output
    with app.app_context():
        micros = sorted(c.cost_micro_usd for c in LlmCall.select())
    assert micros == [1, 100_000, 200_000, 300_000]
    assert sum(Decimal(m) / 10**6 for m in micros) == Decimal("0.600001")


def test_import_commits_in_chunks_and_counts_duplicates_across_them(app, runner, monkeypatch):
    from app import ingest

    monkeypatch.setattr(ingest, "IMPORT_TRANSACTION_ROWS", 100)
    invoke(runner, "tenants", "create", "acme")
    records = [record("acme", T0 + dt.timedelta(minutes=i)) for i in range(400)]
    # Lines 401-460 repeat calls of earlier transactions, and 451-460 also of their own.
    repeated = records[:50] + records[:10]
    result = invoke(runner, "calls", "import", "-", input=jsonl(records + repeated))
    assert result.exit_code == 0, result.output
    assert "Imported: 400 created, 60 duplicates." in result.output
    with app.app_context():
        assert sorted(str(c) for (c,) in LlmCall.select(LlmCall.call_id).tuples()) == \
            sorted(r["call_id"] for r in records)


class FailsAfter:
    """The app's repository, except that add_calls call number `fail_at` fails
    as a lost database would: a crash in the middle of an import."""

    def __init__(self, repository, fail_at):
        self.repository, self.fail_at, self.calls = repository, fail_at, 0

    def add_calls(self, rows):
        self.calls += 1
        if self.calls == self.fail_at:
            raise OperationalError("disk I/O error")
        return self.repository.add_calls(rows)


def test_interrupted_import_says_what_is_stored_and_a_rerun_completes_it(app, runner, monkeypatch):
    from app import ingest

    monkeypatch.setattr(ingest, "IMPORT_TRANSACTION_ROWS", 100)
    invoke(runner, "tenants", "create", "acme")
    records = [record("acme", T0 + dt.timedelta(minutes=i)) for i in range(450)]
    real = app.extensions["usage_repository"]
    monkeypatch.setitem(app.extensions, "usage_repository", FailsAfter(real, fail_at=3))
    result = invoke(runner, "calls", "import", "-", input=jsonl(records))
    assert result.exit_code != 0
    assert "200 created, 0 duplicates" in result.output
    assert "run the same import again" in result.output
    assert count_calls(app) == 200

    monkeypatch.setitem(app.extensions, "usage_repository", real)
    result = invoke(runner, "calls", "import", "-", input=jsonl(records))
    assert result.exit_code == 0, result.output
    assert "Imported: 250 created, 200 duplicates." in result.output
    assert count_calls(app) == 450


def test_calls_sample_fills_the_days_before_today_once_a_day(runner, client, keys):
    """Every call on one of the --days UTC days before today, per tenant and day
    as asked; the same day again, only duplicates; rollups kept (approximate)."""
    keys.tenant("acme")
    keys.tenant("globex")
    result = invoke(runner, "calls", "sample", "--days", "3", "--per-day", "5")
    assert result.exit_code == 0, result.output
    assert "acme, globex: 30 created, 0 duplicates" in result.output
    result = invoke(runner, "calls", "sample", "--days", "3", "--per-day", "5")
    assert "0 created, 30 duplicates" in result.output
    today = dt.datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    key = keys.key("acme")
    for day in range(1, 4):
        start = today - dt.timedelta(days=day)
        body = client.get("/v1/usage", headers={"X-API-Key": key}, query_string={
            "from": start.isoformat(), "to": (start + dt.timedelta(days=1)).isoformat(),
            "percentiles": "approximate"}).get_json()
        assert body["total_calls"] == 5, day
    outside = client.get("/v1/usage", headers={"X-API-Key": key}, query_string={
        "to": (today - dt.timedelta(days=3)).isoformat()}).get_json()["total_calls"]
    outside += client.get("/v1/usage", headers={"X-API-Key": key}, query_string={
        "from": today.isoformat()}).get_json()["total_calls"]
    assert outside == 0


def test_calls_sample_names_an_unknown_tenant(runner):
    result = invoke(runner, "calls", "sample", "--tenant", "nope")
    assert result.exit_code == 1 and "Unknown tenant 'nope'" in result.output
    assert "No tenant yet" in invoke(runner, "calls", "sample").output


def flask_in_terminal(*args, env):
    """`flask --app wsgi *args` with standard error on a pseudo-terminal, as in
    a shell, and standard output on a pipe; returns (exit status, stdout, stderr)."""
    leader, terminal = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal)
    os.close(terminal)
    stdout = process.stdout.read().decode()
    stderr = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: every writer closed the terminal
            break
        if not chunk:
            break
        stderr += chunk
    os.close(leader)
    return process.wait(), stdout, stderr.decode().replace("\r\n", "\n")


def environment(**variables):
    return {**{k: v for k, v in os.environ.items() if k != "DATABASE_URL"}, **variables}


def test_each_command_names_its_database_on_a_terminal_and_never_on_stdout(tmp_path):
    url = f"sqlite:///{tmp_path}/usage.db"
    status, stdout, stderr = flask_in_terminal("db", "upgrade", env=environment(DATABASE_URL=url))
    assert status == 0 and stdout.startswith("Applied ")
    assert stderr == f"Using database {url}\n"
    status, stdout, stderr = flask_in_terminal("tenants", "create", "acme", env=environment(DATABASE_URL=url))
    assert (status, stdout, stderr) == (0, "Created tenant acme\n", f"Using database {url}\n")
    # Not on a terminal (a script, cron's mail, the tests' runner): no line at all.
    piped = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "tenants", "list"], cwd=ROOT,
                           env=environment(DATABASE_URL=url), capture_output=True, text=True)
    assert (piped.returncode, piped.stdout, piped.stderr) == (0, "acme\t-\tacme\n", "")


def test_the_database_line_hides_the_password():
    url = f"postgresql://usage:s3cr3t-pw@127.0.0.1:{free_port()}/usage"  # nothing listens there
    status, stdout, stderr = flask_in_terminal("tenants", "list", env=environment(DATABASE_URL=url))
    assert status == 1 and stdout == ""
    lines = stderr.splitlines()
    assert lines[0] == f"Using database {url.replace(':s3cr3t-pw@', ':***@')}"
    assert len(lines) == 2 and lines[1].startswith("Error: Cannot open the database") and "s3cr3t" not in stderr


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_the_database_line_says_when_it_is_the_default(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    shown = Terminal()
    announce_database("sqlite:////srv/usage/instance/usage.db", shown)
    assert shown.getvalue() == "Using database sqlite:////srv/usage/instance/usage.db (DATABASE_URL is not set)\n"
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/usage")
    shown = Terminal()
    announce_database("postgresql://postgres@127.0.0.1:5432/usage", shown)
    assert shown.getvalue() == "Using database postgresql://postgres@127.0.0.1:5432/usage\n"
