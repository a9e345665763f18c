"""The audit log: every administrative action, by whom, never a secret; and the CLI's key commands."""
import datetime as dt
import json

import pytest
from peewee import DatabaseError

from app import accounts
from app.db import database
from app.models import ApiKey
from conftest import auth

UTC = dt.timezone.utc


@pytest.fixture
def admin(keys):
    keys.tenant("ops", allows_superusers=True)
    return keys.key("ops", superuser=True, name="root")


def events(client, admin, **params):
    response = client.get("/v1/audit", headers=auth(admin), query_string=params)
    assert response.status_code == 200
    return response


def key_id(key):
    return key.split("_")[1]


def test_each_action_is_recorded_with_actor_request_and_target(client, admin):
    actions = []  # (action, target, request id), as the responses say

    def post(path, body, request_id, status=201):
        response = client.post(path, headers={**auth(admin), "X-Request-ID": request_id}, json=body)
        assert response.status_code == status
        return response.get_json()

    post("/v1/tenants", {"tenant_id": "acme", "name": "Acme"}, "req-tenant")
    actions.append(("tenant.create", "tenant:acme", "req-tenant"))
    created = post("/v1/tenants/acme/keys", {"name": "dash", "scopes": ["usage:read"]}, "req-key")
    actions.append(("key.create", f"key:{created['key_id']}", "req-key"))
    rotated = post(f"/v1/keys/{created['key_id']}/rotate", {"grace_seconds": 60}, "req-rotate")
    actions.append(("key.rotate", f"key:{created['key_id']}", "req-rotate"))
    response = client.delete(f"/v1/keys/{rotated['key_id']}", headers={**auth(admin), "X-Request-ID": "req-revoke"})
    assert response.status_code == 204
    actions.append(("key.revoke", f"key:{rotated['key_id']}", "req-revoke"))
    post("/v1/tenants", {"tenant_id": "acme"}, "req-again", status=409)  # refused: no event

    everything = events(client, admin).get_json()
    listed = everything[:len(actions)]
    assert [(e["action"], e["target"], e["request_id"]) for e in listed] == actions[::-1]
    assert {e["actor"] for e in listed} == {key_id(admin)}
    assert [(e["action"], e["actor"]) for e in everything[len(actions):]] == [  # the fixture's
        ("key.create", "cli"), ("tenant.create", "cli")]
    assert [e["id"] for e in listed] == sorted((e["id"] for e in listed), reverse=True)
    by_action = {e["action"]: e for e in listed}
    assert by_action["tenant.create"]["details"] == {"name": "Acme", "allows_superusers": False}
    assert by_action["key.create"]["details"] == {
        "tenant_id": "acme", "name": "dash", "is_superuser": False, "scopes": ["usage:read"], "expires_at": None}
    assert by_action["key.rotate"]["details"]["replaced_by"] == rotated["key_id"]
    assert by_action["key.rotate"]["details"]["grace_seconds"] == 60
    ends = dt.datetime.fromisoformat(by_action["key.rotate"]["details"]["old_expires_at"])
    grace = ends - dt.datetime.fromisoformat(by_action["key.rotate"]["at"])  # from the rotation's own clock
    assert dt.timedelta(seconds=59) < grace <= dt.timedelta(seconds=60)
    assert by_action["key.revoke"]["details"]["already_revoked"] is False
    text = events(client, admin).get_data(as_text=True)
    for key in (created["key"], rotated["key"], admin):  # never a secret, nor its digest
        assert key.split("_", 2)[2] not in text
    with client.application.app_context():
        assert not any(k.secret_sha256 in text for k in ApiKey.select())


def test_the_log_pages_newest_first_and_needs_admin(client, admin, keys):
    for number in range(5):
        client.post("/v1/tenants", headers=auth(admin), json={"tenant_id": f"t{number}"})
    page = events(client, admin, page=2, page_size=2)
    assert [e["target"] for e in page.get_json()] == ["tenant:t2", "tenant:t1"]
    assert json.loads(page.headers["X-Pagination"])["total"] == 7  # and the fixture's tenant and key
    assert events(client, admin, page=9, page_size=2).get_json() == []
    reader = keys.key("ops", scopes=["all:read"])
    assert client.get("/v1/audit", headers=auth(reader)).status_code == 403
    assert client.get("/v1/audit").status_code == 401


def test_an_action_and_its_event_are_one_transaction(app, admin):
    """An event that cannot be written takes its action with it."""
    with app.app_context():
        database.execute_sql("DROP TABLE audit_event")
        with pytest.raises(DatabaseError):
            accounts.create_tenant("acme")
        with pytest.raises(DatabaseError):
            accounts.create_key("ops", "k")
        assert [t for (t,) in database.execute_sql("SELECT tenant_id FROM tenant")] == ["ops"]
        assert ApiKey.select().count() == 1


def invoke(runner, *args):
    return runner.invoke(args=list(args))


def test_the_cli_creates_scoped_expiring_keys_and_is_the_actor(app, client, runner, admin):
    assert invoke(runner, "tenants", "create", "acme").exit_code == 0
    result = invoke(runner, "keys", "create", "--tenant", "ops", "--name", "dashboard",
                    "--scope", "all:read", "--expires-in", "90d")
    assert result.exit_code == 0, result.output
    key = result.output.splitlines()[-1]
    assert "(scopes all:read, expires 20" in result.output
    me = client.get("/v1/me", headers=auth(key)).get_json()
    assert (me["scopes"], me["is_superuser"]) == (["all:read"], True)
    lifetime = dt.datetime.fromisoformat(me["expires_at"]) - dt.datetime.now(UTC)
    assert dt.timedelta(days=90) - dt.timedelta(minutes=1) < lifetime <= dt.timedelta(days=90)

    refused = invoke(runner, "keys", "create", "--tenant", "acme", "--name", "x", "--scope", "admin")
    assert refused.exit_code == 1 and "does not allow superuser keys" in refused.output
    assert invoke(runner, "keys", "create", "--tenant", "acme", "--name", "x", "--scope", "read").exit_code == 2
    assert "not a duration" in invoke(runner, "keys", "create", "--tenant", "acme", "--name", "x",
                                      "--expires-in", "soon").output

    listed = events(client, admin).get_json()
    assert [(e["action"], e["actor"], e["request_id"]) for e in listed] == [
        ("key.create", "cli", None), ("tenant.create", "cli", None),
        ("key.create", "cli", None), ("tenant.create", "cli", None)]  # the fixture's first
    assert (listed[0]["target"], listed[1]["target"]) == (f"key:{key_id(key)}", "tenant:acme")


def test_the_cli_rotates_a_key_and_lists_every_state(app, client, runner, admin, keys):
    keys.tenant("acme")
    old, revoked, expired = keys.key("acme", name="old"), keys.key("acme", name="gone"), keys.key("acme", name="late")
    invoke(runner, "keys", "revoke", key_id(revoked))
    with app.app_context():
        (ApiKey.update(expires_at=dt.datetime(2026, 1, 1, tzinfo=UTC))
         .where(ApiKey.key_id == key_id(expired)).execute())
    result = invoke(runner, "keys", "rotate", key_id(old), "--grace", "1h")
    assert result.exit_code == 0, result.output
    new = result.output.splitlines()[-1]
    assert f"Rotated key {key_id(old)}: it stops working at " in result.output
    assert client.get("/v1/usage", headers=auth(new)).status_code == 200
    assert client.get("/v1/usage", headers=auth(old)).status_code == 200  # in its grace hour
    again = invoke(runner, "keys", "rotate", key_id(old))
    assert again.exit_code == 1 and "already rotated" in again.output

    lines = {line.split("\t")[0]: line.split("\t") for line in
             invoke(runner, "keys", "list", "--tenant", "acme").output.splitlines()}
    assert lines[key_id(old)][3].startswith("expires ") and lines[key_id(old)][3].endswith(
        f"(rotated to {key_id(new)})")
    assert lines[key_id(revoked)][3].startswith("revoked ")
    assert lines[key_id(expired)][3] == "expired 2026-01-01T00:00:00+00:00"
    assert lines[key_id(new)][3:] == ["active", "usage:read,calls:write", "old"]
