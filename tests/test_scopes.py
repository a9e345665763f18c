"""Least privilege: scopes on every route, expiry and rotation of keys."""
import datetime as dt
import re
import threading

import pytest

from app import accounts
from app.db import database
from app.keys import KEY_ID_PATTERN
from app.migrate import _router, upgrade
from app.models import ApiKey
from conftest import Keys, auth, build_app, roll_back_through
from data import record, to_json

UTC = dt.timezone.utc
ALL_SCOPES = ["usage:read", "calls:write", "all:read", "admin"]
CALL = to_json(record("acme", dt.datetime(2026, 11, 2, 12, tzinfo=UTC)))

# The specification: (method, path, body, the one scope it needs).
ROUTES = [
    ("get", "/v1/usage", None, "usage:read"),
    ("get", "/v1/usage/series", None, "usage:read"),
    ("post", "/v1/usage/calls", {"calls": [CALL]}, "calls:write"),
    ("get", "/v1/usage/all", None, "all:read"),
    ("get", "/v1/usage/all/series", None, "all:read"),
    ("get", "/v1/usage/calls", None, "usage:read"),
    ("get", "/v1/usage/all/calls", None, "all:read"),
    ("get", "/v1/tenants", None, "admin"),
    ("post", "/v1/tenants", {"tenant_id": "newco"}, "admin"),
    ("get", "/v1/tenants/acme", None, "admin"),
    ("get", "/v1/tenants/acme/keys", None, "admin"),
    ("post", "/v1/tenants/acme/keys", {"name": "k"}, "admin"),
    ("delete", "/v1/keys/0123456789abcdef", None, "admin"),
    ("post", "/v1/keys/0123456789abcdef/rotate", {}, "admin"),
    ("get", "/v1/audit", None, "admin"),
    ("post", "/v1/tenants/acme/budgets", {"name": "cap", "amount_usd": "1", "period": "day"}, "admin"),
    ("get", "/v1/budgets", None, "usage:read"),
    ("get", "/v1/budgets/check", None, "calls:write"),
    ("post", "/v1/webhooks", {"url": "http://127.0.0.1:9/hook"}, "admin"),
    ("get", "/v1/webhooks", None, "admin"),
    ("delete", "/v1/tenants/acme", None, "admin"),  # last: it erases acme
]


@pytest.fixture
def ops(keys):
    keys.tenant("acme")
    keys.tenant("ops", allows_superusers=True)
    return keys


def call(client, method, path, key, body=None):
    return getattr(client, method)(path, headers=auth(key), json=body)


def key_id(key):
    return key.split("_")[1]


def test_every_route_needs_its_scope_and_names_it_when_missing(client, ops):
    for method, path, body, scope in ROUTES:
        only = ops.key("ops", superuser=True, scopes=[scope])
        assert call(client, method, path, only, body).status_code not in (401, 403), path
        others = [s for s in ALL_SCOPES if s != scope]
        refused = call(client, method, path, ops.key("ops", superuser=True, scopes=others), body)
        assert refused.status_code == 403, path
        assert refused.get_json()["message"] == (
            f"This operation needs the scope '{scope}'; this key has {', '.join(others)}.")


def test_the_contract_says_which_scope_each_operation_needs(client):
    spec = client.get("/openapi.json").get_json()
    for method, path, _, scope in ROUTES:
        template = (path.replace("/acme", "/{tenant_id}").replace("0123456789abcdef", "{key_id}"))
        operation = spec["paths"][template][method]
        assert operation["x-required-scope"] == scope, path
        assert f"**Scope:** `{scope}`" in operation["description"], path
    assert "x-required-scope" not in spec["paths"]["/v1/me"]["get"]


def test_keys_without_scopes_keep_the_powers_of_their_kind(client, ops):
    tenant_key, superuser_key = ops.key("acme"), ops.key("ops", superuser=True)
    assert call(client, "get", "/v1/me", tenant_key).get_json()["scopes"] == ["usage:read", "calls:write"]
    me = call(client, "get", "/v1/me", superuser_key).get_json()
    assert (me["scopes"], me["is_superuser"], me["expires_at"]) == (ALL_SCOPES, True, None)
    assert call(client, "post", "/v1/usage/calls", tenant_key, {"calls": [CALL]}).status_code == 201
    assert call(client, "get", "/v1/usage", tenant_key).get_json()["total_calls"] == 1
    assert call(client, "get", "/v1/usage/all", tenant_key).status_code == 403
    assert call(client, "get", "/v1/tenants", superuser_key).status_code == 200


def test_a_backend_key_records_for_every_tenant_and_reads_nothing(client, ops):
    created = call(client, "post", "/v1/tenants/ops/keys", ops.key("ops", superuser=True),
                   {"name": "backend", "is_superuser": True, "scopes": ["calls:write"]}).get_json()
    assert (created["scopes"], created["is_superuser"]) == (["calls:write"], True)
    backend = created["key"]
    assert call(client, "post", "/v1/usage/calls", backend, {"calls": [CALL]}).get_json()["created"] == 1
    for path in ("/v1/usage", "/v1/usage/all", "/v1/usage/series", "/v1/tenants"):
        assert call(client, "get", path, backend).status_code == 403, path


def test_a_read_only_dashboard_key_reads_every_tenant_and_writes_nothing(client, ops):
    admin = ops.key("ops", superuser=True)
    created = call(client, "post", "/v1/tenants/ops/keys", admin,
                   {"name": "dashboard", "scopes": ["all:read"]}).get_json()
    assert (created["scopes"], created["is_superuser"]) == (["all:read"], True)  # implied by all:read
    reader = created["key"]
    call(client, "post", "/v1/usage/calls", ops.key("acme"), {"calls": [CALL]})
    assert call(client, "get", "/v1/usage/all", reader).get_json()["total"]["total_calls"] == 1
    for method, path, body in (("post", "/v1/usage/calls", {"calls": [CALL]}), ("get", "/v1/usage", None),
                               ("post", "/v1/tenants/ops/keys", {"name": "escalate", "scopes": ["admin"]}),
                               ("post", "/v1/tenants", {"tenant_id": "x"})):
        assert call(client, method, path, reader, body).status_code == 403, path


@pytest.mark.parametrize("body, field_or_message", [
    ({"name": "k", "scopes": ["usage:write"]}, "scopes"),
    ({"name": "k", "scopes": []}, "scopes"),
    ({"name": "k", "scopes": "usage:read"}, "scopes"),
    ({"name": "k", "scopes": ["all:read"], "is_superuser": False}, "reaches every tenant"),
    ({"name": "k", "expires_at": "2026-01-01T00:00:00Z"}, "has passed"),
    ({"name": "k", "expires_at": "2030-01-01T00:00:00"}, "expires_at"),
])
def test_key_creation_refuses_bad_scopes_and_expiries(client, ops, body, field_or_message):
    response = call(client, "post", "/v1/tenants/ops/keys", ops.key("ops", superuser=True), body)
    assert response.status_code == 422
    answer = response.get_json()
    assert field_or_message in answer.get("errors", {}).get("json", {}) or field_or_message in answer["message"]
    assert len(list(ApiKey.select())) == 1  # nothing was created


def test_cross_tenant_scopes_need_a_tenant_that_allows_superusers(client, ops):
    admin = ops.key("ops", superuser=True)
    for scopes in (["all:read"], ["admin"], ["usage:read", "all:read"]):
        response = call(client, "post", "/v1/tenants/acme/keys", admin, {"name": "k", "scopes": scopes})
        assert response.status_code == 422 and "does not allow superuser keys" in response.get_json()["message"]
    fine = call(client, "post", "/v1/tenants/acme/keys", admin, {"name": "k", "scopes": ["calls:write"]})
    assert (fine.status_code, fine.get_json()["is_superuser"]) == (201, False)


def expire(key, moment):
    ApiKey.update(expires_at=moment).where(ApiKey.key_id == key_id(key)).execute()


def expired_refusals(client):
    text = client.get("/metrics").get_data(as_text=True)
    found = re.search(r'^usage_auth_failures_total\{reason="expired"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_an_expired_key_is_refused_saying_so(app, client, ops):
    expires_at = dt.datetime.now(UTC) + dt.timedelta(days=90)
    created = call(client, "post", "/v1/tenants/acme/keys", ops.key("ops", superuser=True),
                   {"name": "k", "expires_at": expires_at.isoformat()}).get_json()
    assert created["expires_at"] == expires_at.isoformat()
    key = created["key"]
    assert call(client, "get", "/v1/me", key).get_json()["expires_at"] == expires_at.isoformat()
    with app.app_context():  # the day comes
        expire(key, dt.datetime(2026, 3, 1, tzinfo=UTC))
    counted = expired_refusals(client)
    response = call(client, "get", "/v1/usage", key)
    assert response.status_code == 401
    assert expired_refusals(client) == counted + 1
    assert response.get_json()["message"] == "The API key expired at 2026-03-01T00:00:00+00:00."
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def rotate(client, admin, key, **body):
    return call(client, "post", f"/v1/keys/{key_id(key)}/rotate", admin, body)


def test_rotation_gives_a_twin_key_and_ends_the_old_one_after_the_grace(app, client, ops):
    admin = ops.key("ops", superuser=True)
    old = ops.key("ops", name="reporting", scopes=["all:read"])
    before = dt.datetime.now(UTC)
    response = rotate(client, admin, old, grace_seconds=3600)
    assert response.status_code == 201
    new = response.get_json()
    assert (new["tenant_id"], new["name"], new["scopes"], new["is_superuser"], new["expires_at"]) == (
        "ops", "reporting", ["all:read"], True, None)
    for key in (old, new["key"]):  # both work during the grace period
        assert call(client, "get", "/v1/usage/all", key).status_code == 200
    [listed] = [k for k in call(client, "get", "/v1/tenants/ops/keys", admin).get_json()
                if k["key_id"] == key_id(old)]
    assert listed["replaced_by"] == new["key_id"]
    ends = dt.datetime.fromisoformat(listed["expires_at"])
    assert before + dt.timedelta(hours=1) <= ends <= dt.datetime.now(UTC) + dt.timedelta(hours=1)
    with app.app_context():  # the grace period ends
        expire(old, before)
    refused = call(client, "get", "/v1/usage/all", old)
    assert refused.status_code == 401
    assert refused.get_json()["message"].endswith(f"It was rotated: use its replacement, key {new['key_id']}.")
    assert call(client, "get", "/v1/usage/all", new["key"]).status_code == 200


def test_rotation_without_grace_ends_the_old_key_at_once_and_keeps_the_lifetime(client, ops):
    admin = ops.key("ops", superuser=True)
    old = ops.key("acme", expires_at=dt.datetime.now(UTC) + dt.timedelta(days=90))
    new = rotate(client, admin, old).get_json()
    assert call(client, "get", "/v1/usage", old).status_code == 401
    lifetime = dt.datetime.fromisoformat(new["expires_at"]) - dt.datetime.fromisoformat(new["created_at"])
    assert abs(lifetime - dt.timedelta(days=90)) < dt.timedelta(seconds=5)
    forever = rotate(client, admin, new["key"], expires_at=None).get_json()
    assert forever["expires_at"] is None


def test_a_key_rotates_once_and_never_when_revoked_or_expired(app, client, ops):
    admin = ops.key("ops", superuser=True)
    rotated, revoked, expired = (ops.key("acme") for _ in range(3))
    assert rotate(client, admin, rotated, grace_seconds=60).status_code == 201
    call(client, "delete", f"/v1/keys/{key_id(revoked)}", admin)
    with app.app_context():
        expire(expired, dt.datetime(2026, 1, 1, tzinfo=UTC))
    for key, reason in ((rotated, "already rotated"), (revoked, "is revoked"), (expired, "expired")):
        response = rotate(client, admin, key)
        assert response.status_code == 409 and reason in response.get_json()["message"]
    for grace in (-1, 30 * 86400 + 1, "60", 1.5):
        assert "grace_seconds" in rotate(client, admin, ops.key("acme"), grace_seconds=grace).get_json()["errors"]["json"]
    assert rotate(client, admin, "usk_0123456789abcdef_x").status_code == 404
    with app.app_context():
        assert ApiKey.select().where(ApiKey.tenant == "acme").count() == 3 + 1 + 4


def test_concurrent_rotations_of_one_key_make_one_new_key(app, ops):
    old = ops.key("acme")
    outcomes, start = [], threading.Barrier(6)

    def rotate_once():
        with app.app_context():
            start.wait()
            try:
                outcomes.append(accounts.rotate_key(key_id(old), dt.timedelta(minutes=5))[0].key_id)
            except accounts.KeyNotRotatable:
                outcomes.append("refused")
            except Exception as error:  # SQLite's lock: the loser's transaction fails whole
                outcomes.append(type(error).__name__)
            finally:
                if not database.is_closed():
                    database.close()

    threads = [threading.Thread(target=rotate_once) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes if re.fullmatch(KEY_ID_PATTERN, o)]
    assert len(winners) == 1, outcomes
    with app.app_context():
        keys = list(ApiKey.select().where(ApiKey.tenant == "acme"))
        assert sorted(k.key_id for k in keys) == sorted([key_id(old), winners[0]])
        assert ApiKey.get_by_id(key_id(old)).replaced_by == winners[0]


def test_migration_009_gives_existing_keys_the_powers_they_had(database_url, tmp_path):
    app = build_app(database_url, tmp_path, migrate=False)
    with app.app_context():
        _router(database.obj).run("008_sketch_pairs_of_four_bytes")
    before = Keys(app)
    superuser, tenant_key = (before.tenant_and_key_before_scopes("ops", superuser=True),
                             before.tenant_and_key_before_scopes("acme"))
    with app.app_context():
        upgrade(database.obj)
    client = app.test_client()
    for key, scopes in ((superuser, ALL_SCOPES), (tenant_key, ["usage:read", "calls:write"])):
        me = client.get("/v1/me", headers=auth(key)).get_json()
        assert (me["scopes"], me["expires_at"]) == (scopes, None)
    assert client.get("/v1/audit", headers=auth(superuser)).get_json() == []
    with app.app_context():
        roll_back_through(database.obj, "009_key_scopes_expiry_audit")
        assert "scopes" not in {column.name for column in database.get_columns("api_key")}
        assert not database.table_exists("audit_event")
        upgrade(database.obj)
    assert client.get("/v1/me", headers=auth(tenant_key)).get_json()["scopes"] == ["usage:read", "calls:write"]
