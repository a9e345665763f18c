"""Tenant and key administration over REST, /v1/me, and key hygiene."""
import json
import logging
import urllib.error
import urllib.request

import pytest

from app.db import database
from conftest import auth


@pytest.fixture
def admin(keys):
    keys.tenant("ops", allows_superusers=True)
    return keys.key("ops", superuser=True, name="root")


def test_create_get_and_list_tenants(client, admin):
    response = client.post("/v1/tenants", headers=auth(admin),
                           json={"tenant_id": "acme", "name": "Acme Corp"})
    assert response.status_code == 201
    body = response.get_json()
    assert {k: body[k] for k in ("tenant_id", "name", "allows_superusers")} == {
        "tenant_id": "acme", "name": "Acme Corp", "allows_superusers": False}
    assert body["created_at"].endswith("+00:00")
    assert client.get("/v1/tenants/acme", headers=auth(admin)).get_json() == body
    assert client.post("/v1/tenants", headers=auth(admin), json={"tenant_id": "zed"}).get_json()["name"] == "zed"

    listing = client.get("/v1/tenants", headers=auth(admin))
    assert [t["tenant_id"] for t in listing.get_json()] == ["acme", "ops", "zed"]
    page = client.get("/v1/tenants?page=2&page_size=2", headers=auth(admin))
    assert [t["tenant_id"] for t in page.get_json()] == ["zed"]
    assert json.loads(page.headers["X-Pagination"])["total"] == 3


def test_tenant_refusals(client, admin, keys):
    client.post("/v1/tenants", headers=auth(admin), json={"tenant_id": "acme"})
    duplicate = client.post("/v1/tenants", headers=auth(admin), json={"tenant_id": "acme"})
    assert duplicate.status_code == 409 and "already exists" in duplicate.get_json()["message"]
    for bad in ({"tenant_id": "Acme"}, {"tenant_id": "-x"}, {"tenant_id": "a" * 65}, {}):
        response = client.post("/v1/tenants", headers=auth(admin), json=bad)
        assert response.status_code == 422 and "tenant_id" in response.get_json()["errors"]["json"]
    assert client.get("/v1/tenants/nobody", headers=auth(admin)).status_code == 404
    tenant_key = keys.key("acme")
    for method, path in (("post", "/v1/tenants"), ("get", "/v1/tenants"), ("get", "/v1/tenants/acme"),
                         ("post", "/v1/tenants/acme/keys"), ("get", "/v1/tenants/acme/keys"),
                         ("delete", "/v1/keys/0000000000000000")):
        response = getattr(client, method)(path, headers=auth(tenant_key), json={})
        assert response.status_code == 403, path
        assert response.get_json()["code"] == 403
        assert getattr(client, method)(path, json={}).status_code == 401


def test_create_list_and_revoke_keys(client, admin):
    client.post("/v1/tenants", headers=auth(admin), json={"tenant_id": "acme"})
    response = client.post("/v1/tenants/acme/keys", headers=auth(admin), json={"name": "dashboard"})
    assert response.status_code == 201
    created = response.get_json()
    assert set(created) == {"key_id", "name", "tenant_id", "is_superuser", "scopes", "created_at",
                            "expires_at", "key"}
    assert created["key"].startswith(f"usk_{created['key_id']}_")
    assert (created["tenant_id"], created["is_superuser"]) == ("acme", False)

    me = client.get("/v1/me", headers=auth(created["key"])).get_json()
    assert me == {"tenant_id": "acme", "key_id": created["key_id"], "name": "dashboard", "is_superuser": False,
                  "scopes": ["usage:read", "calls:write"], "expires_at": None}

    listing = client.get("/v1/tenants/acme/keys", headers=auth(admin))
    [listed] = listing.get_json()
    assert listed["key_id"] == created["key_id"] and listed["revoked_at"] is None
    assert listed["last_used_at"] is not None
    assert created["key"].split("_", 2)[2] not in listing.get_data(as_text=True)

    assert client.delete(f"/v1/keys/{created['key_id']}", headers=auth(admin)).status_code == 204
    assert client.get("/v1/me", headers=auth(created["key"])).status_code == 401
    [listed] = client.get("/v1/tenants/acme/keys", headers=auth(admin)).get_json()
    assert listed["revoked_at"] is not None
    assert client.delete(f"/v1/keys/{created['key_id']}", headers=auth(admin)).status_code == 204
    assert client.delete("/v1/keys/0123456789abcdef", headers=auth(admin)).status_code == 404


def test_key_refusals(client, admin):
    client.post("/v1/tenants", headers=auth(admin), json={"tenant_id": "acme"})
    response = client.post("/v1/tenants/acme/keys", headers=auth(admin),
                           json={"name": "x", "is_superuser": True})
    assert response.status_code == 422
    assert "does not allow superuser keys" in response.get_json()["message"]
    assert client.post("/v1/tenants/nobody/keys", headers=auth(admin), json={"name": "x"}).status_code == 404
    assert client.get("/v1/tenants/nobody/keys", headers=auth(admin)).status_code == 404
    missing_name = client.post("/v1/tenants/acme/keys", headers=auth(admin), json={})
    assert missing_name.status_code == 422 and "name" in missing_name.get_json()["errors"]["json"]
    superuser = client.post("/v1/tenants/ops/keys", headers=auth(admin), json={"name": "y", "is_superuser": True})
    assert superuser.status_code == 201 and superuser.get_json()["is_superuser"] is True


def test_me_for_a_superuser(client, admin):
    me = client.get("/v1/me", headers={"X-API-Key": admin}).get_json()
    assert me["tenant_id"] == "ops" and me["is_superuser"] is True and me["name"] == "root"


def test_secrets_never_stored_nor_logged(app, client, admin, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    client.post("/v1/tenants", headers=auth(admin), json={"tenant_id": "acme"})
    key = client.post("/v1/tenants/acme/keys", headers=auth(admin), json={"name": "k"}).get_json()["key"]
    secret = key.split("_", 2)[2]
    assert client.get("/v1/me", headers=auth(key)).status_code == 200
    client.delete(f"/v1/keys/{key.split('_')[1]}", headers=auth(admin))
    assert client.get("/v1/me", headers=auth(key)).status_code == 401

    for text in (key, secret, admin, admin.split("_", 2)[2]):
        assert text not in caplog.text
    hidden = (secret, admin.split("_", 2)[2])
    with app.app_context():
        for table in ("tenant", "api_key", "llm_call"):
            rows = repr(database.execute_sql(f"SELECT * FROM {table}").fetchall())
            assert not any(text in rows for text in hidden)
        if app.config["DATABASE_URL"].startswith("sqlite"):
            # Read the files while a connection is open, so the WAL is there too.
            files = list(tmp_path.glob("usage.db*"))
            assert any(f.name.endswith("-wal") for f in files)
            for path in files:
                content = path.read_bytes()
                assert not any(text.encode() in content for text in hidden)


def test_revocation_is_seen_by_every_worker(app, admin, keys, live_server):
    keys.tenant("acme")
    key = keys.key("acme")

    def status(method, path, use_key):
        request = urllib.request.Request(live_server + path, method=method, headers=auth(use_key))
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    # Many requests spread over the three workers, so each has served the key.
    assert {status("GET", "/v1/me", key) for _ in range(30)} == {200}
    assert status("DELETE", f"/v1/keys/{key.split('_')[1]}", admin) == 204
    assert {status("GET", "/v1/me", key) for _ in range(30)} == {401}
