"""The API-key guard on /v1 routes."""
import datetime as dt

from conftest import auth
from app.models import ApiKey


def test_missing_key_is_401_with_challenge(client, keys):
    response = client.get("/v1/usage")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.get_json()["code"] == 401


def test_unknown_and_malformed_keys_are_401(client, keys):
    keys.tenant("acme")
    real = keys.key("acme")
    key_id = real.split("_")[1]
    forged = f"usk_{key_id}_{'A' * 43}"
    for key in ("nonsense", "usk_0123456789abcdef_" + "x" * 43, forged, real + "x"):
        response = client.get("/v1/usage", headers=auth(key))
        assert response.status_code == 401, key
        assert "WWW-Authenticate" in response.headers


def test_bearer_and_x_api_key_both_work(client, keys):
    keys.tenant("acme")
    key = keys.key("acme")
    assert client.get("/v1/usage", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert client.get("/v1/usage", headers={"X-API-Key": key}).status_code == 200


def test_revoked_key_is_refused_at_once(client, keys, runner):
    keys.tenant("acme")
    key = keys.key("acme")
    assert client.get("/v1/usage", headers=auth(key)).status_code == 200
    result = runner.invoke(args=["keys", "revoke", key.split("_")[1]])
    assert result.exit_code == 0, result.output
    assert client.get("/v1/usage", headers=auth(key)).status_code == 401


def test_tenant_key_on_superuser_route_is_403(client, keys):
    keys.tenant("acme", allows_superusers=True)
    response = client.get("/v1/usage/all", headers=auth(keys.key("acme")))
    assert response.status_code == 403
    assert response.get_json()["status"] == "Forbidden"
    assert client.get("/v1/usage/all", headers=auth(keys.key("acme", superuser=True))).status_code == 200


def test_last_used_at_is_refreshed_at_most_once_a_minute(app, client, keys):
    keys.tenant("acme")
    key = keys.key("acme")
    key_id = key.split("_")[1]
    with app.app_context():
        assert ApiKey.get_by_id(key_id).last_used_at is None
    client.get("/v1/usage", headers=auth(key))
    with app.app_context():
        first = ApiKey.get_by_id(key_id).last_used_at
    assert first is not None and first.tzinfo is not None
    client.get("/v1/usage", headers=auth(key))
    with app.app_context():
        assert ApiKey.get_by_id(key_id).last_used_at == first
        # Pretend the last use was two minutes ago: the next request refreshes it.
        ApiKey.update(last_used_at=first - dt.timedelta(minutes=2)).where(ApiKey.key_id == key_id).execute()
    client.get("/v1/usage", headers=auth(key))
    with app.app_context():
        assert ApiKey.get_by_id(key_id).last_used_at > first
