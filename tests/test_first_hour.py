"""A newcomer's first hour: what a new user typed, and the answer that helps them."""
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import auth, build_app
from data import UTC, jsonl, record, store

ROOT = Path(__file__).resolve().parent.parent
FLASK = Path(sys.executable).with_name("flask")
T0 = dt.datetime(2026, 11, 1, tzinfo=UTC)
UPGRADE_HINT = "flask --app wsgi db upgrade"


@pytest.fixture
def acme(keys):
    keys.tenant("acme")
    keys.tenant("ops", allows_superusers=True)
    return {"tenant": keys.key("acme"), "admin": keys.key("ops", superuser=True)}


def test_an_offset_pasted_into_a_url_arrives_as_a_space_and_is_understood(app, client, acme):
    store(app, [record("acme", T0 - dt.timedelta(hours=2)), record("acme", T0 - dt.timedelta(hours=3))])
    # `+02:00` unescaped in a query string decodes to " 02:00".
    response = client.get("/v1/usage?from=2026-11-01T00:00:00+02:00", headers=auth(acme["tenant"]))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["from"] == "2026-10-31T22:00:00+00:00" and body["total_calls"] == 1
    response = client.get("/v1/usage?to=2026-11-01T05:30:00-05:30", headers=auth(acme["tenant"]))
    assert response.get_json()["to"] == "2026-11-01T11:00:00+00:00"


@pytest.mark.parametrize("value,says", [
    ("2026-11-01T00:00:00", "needs a timezone: Z or +02:00"),
    ("2026-11-01", "needs a timezone: Z or +02:00"),
    ("yesterday", "e.g. 2026-11-01T00:00:00Z"),
])
def test_datetime_errors_say_what_is_expected(client, acme, value, says):
    response = client.get("/v1/usage", query_string={"from": value}, headers=auth(acme["tenant"]))
    assert response.status_code == 422
    [message] = response.get_json()["errors"]["query"]["from"]
    assert says in message and "aware" not in message


def test_a_naive_record_timestamp_says_what_is_expected(app, client, acme):
    naive = {**json.loads(jsonl([record("acme", T0)])), "timestamp": "2026-11-01T00:00:00"}
    response = client.post("/v1/usage/calls", headers=auth(acme["tenant"]), json={"calls": [naive]})
    [message] = response.get_json()["errors"]["json"]["calls"]["0"]["timestamp"]
    assert "needs a timezone" in message


def test_a_body_without_json_content_type_is_415_not_a_misleading_422(client, acme):
    body = json.dumps({"tenant_id": "umbrella"})
    for path in ("/v1/tenants", "/v1/usage/calls"):
        response = client.post(path, data=body, headers={**auth(acme["admin"]),
                                                          "Content-Type": "text/plain"})
        assert response.status_code == 415, path
        assert "application/json" in response.get_json()["message"]
        # curl -d without -H sends this content type
        response = client.post(path, data=body, headers={
            **auth(acme["admin"]), "Content-Type": "application/x-www-form-urlencoded"})
        assert response.status_code == 415


@pytest.mark.parametrize("path,param", [("/v1/usage", "start"), ("/v1/usage/all", "end"),
                                        ("/v1/tenants", "limit")])
def test_unknown_query_parameters_are_refused(client, acme, path, param):
    response = client.get(path, query_string={param: "2026-11-01T00:00:00Z"}, headers=auth(acme["admin"]))
    assert response.status_code == 422
    assert param in response.get_json()["errors"]["query"]


def test_not_migrated_database_is_not_ready_and_says_what_to_run(database_url, tmp_path):
    app = build_app(database_url, tmp_path, migrate=False)
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert UPGRADE_HINT in response.get_json()["message"]
    result = app.test_cli_runner().invoke(args=["tenants", "list"])
    assert result.exit_code == 1
    assert UPGRADE_HINT in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert app.test_cli_runner().invoke(args=["keys", "create", "--help"]).exit_code == 0


def flask_cli(*args, database_url):
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run([str(FLASK), "--app", "wsgi", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_db_upgrade_on_a_missing_sqlite_folder_is_one_clear_line(tmp_path):
    result = flask_cli("db", "upgrade", database_url=f"sqlite:///{tmp_path}/no/such/dir/usage.db")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "Cannot open the database" in lines[0] and "no/such/dir" in lines[0]


def test_db_upgrade_on_a_missing_postgres_database_is_one_clear_line():
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        pytest.skip("TEST_DATABASE_URL is not set")
    missing = base.rsplit("/", 1)[0] + "/usage_no_such_database"
    result = flask_cli("db", "upgrade", database_url=missing)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "usage_no_such_database" in lines[0] and "does not exist" in lines[0]


def test_postgresql_psycopg_scheme_works():
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        pytest.skip("TEST_DATABASE_URL is not set")
    url = base.replace("postgresql://", "postgresql+psycopg://", 1)
    result = flask_cli("db", "upgrade", database_url=url)
    assert result.returncode == 0, result.stderr


def test_an_unknown_scheme_is_refused_without_mentioning_pool():
    result = flask_cli("db", "upgrade", database_url="postgresql+asyncpg://u@127.0.0.1/x")
    assert result.returncode == 1
    assert "+pool" not in result.stderr and "postgresql+asyncpg" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("path", ["/v1/keys/0123456789abcdef", "/v1/keys/usk_0123456789abcdef_secret"])
def test_revoking_an_unknown_key_is_404_with_a_message(client, acme, path):
    response = client.delete(path, headers=auth(acme["admin"]))
    assert response.status_code == 404 and response.get_json()["message"]


def test_every_cli_option_is_described(app):
    import click

    def commands(group, prefix=()):
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                yield from commands(command, prefix + (name,))
            else:
                yield prefix + (name,), command

    for path, command in commands(app.cli):
        if path[0] not in ("db", "tenants", "keys", "calls"):
            continue  # Flask's own commands
        assert command.help, path
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, (path, param.name)


def test_superuser_refusal_names_the_flag(runner):
    runner.invoke(args=["tenants", "create", "acme"])
    result = runner.invoke(args=["keys", "create", "--tenant", "acme", "--name", "x", "--superuser"])
    assert result.exit_code == 1 and "--allow-superusers" in result.output


def test_revoking_a_revoked_key_says_so(runner):
    runner.invoke(args=["tenants", "create", "acme"])
    key_id = runner.invoke(args=["keys", "create", "--tenant", "acme", "--name", "x"]).output.split()[2]
    first = runner.invoke(args=["keys", "revoke", key_id])
    assert first.exit_code == 0 and "Revoked key" in first.output
    again = runner.invoke(args=["keys", "revoke", key_id])
    assert again.exit_code == 0 and "already revoked" in again.output


def test_a_bad_jsonl_line_does_not_contradict_its_line_number(runner):
    runner.invoke(args=["tenants", "create", "acme"])
    good = jsonl([record("acme", T0)])
    result = runner.invoke(args=["calls", "import", "-"], input=good * 6 + '{"call_id": 1,,}\n')
    assert "line 7: not valid JSON" in result.output
    assert "line 1" not in result.output and "column 15" in result.output


def test_a_line_cut_off_at_its_end_is_reported_at_its_end_not_at_column_1(runner):
    runner.invoke(args=["tenants", "create", "acme"])
    cut = '{"tenant_id": "acme",'  # 21 characters: the parser wants more at column 22
    result = runner.invoke(args=["calls", "import", "-"], input=cut + "\n")
    assert "line 1: not valid JSON" in result.output and "at column 22" in result.output


def test_the_root_links_to_the_docs(client):
    response = client.get("/")
    assert response.status_code == 200
    links = response.get_json()["links"]
    assert links["docs"] == "/docs" and links["openapi"] == "/openapi.json"
    for link in links.values():
        assert client.get(link).status_code == 200
