"""Inputs the contract fuzzer found to cause 500s: each is now a clear 4xx (or an empty page)."""
import json

import pytest

from conftest import auth


@pytest.fixture
def admin(keys):
    keys.tenant("ops", allows_superusers=True)
    return keys.key("ops", superuser=True)


@pytest.mark.parametrize("name", ["nul\u0000byte", "lone \ud800 surrogate"])
def test_text_that_a_database_cannot_store_is_422(client, admin, name):
    body = json.dumps({"tenant_id": "acme", "name": name})
    response = client.post("/v1/tenants", data=body, headers={**auth(admin), "Content-Type": "application/json"})
    assert response.status_code == 422
    assert "name" in response.get_json()["errors"]["json"]
    key = client.post("/v1/tenants/ops/keys", data=json.dumps({"name": name}),
                      headers={**auth(admin), "Content-Type": "application/json"})
    assert key.status_code == 422


def test_page_far_past_the_end_is_empty(client, admin):
    response = client.get("/v1/tenants?page=1465285440664236537675776&page_size=45", headers=auth(admin))
    assert response.status_code == 200 and response.get_json() == []


def test_timestamp_that_overflows_in_utc_is_422(client, admin):
    response = client.get("/v1/usage/all", query_string={"from": "0001-01-01T00:00:00+05:00"},
                          headers=auth(admin))
    assert response.status_code == 422 and "from" in response.get_json()["errors"]["query"]


@pytest.mark.parametrize("path", ["/v1/tenants/Not%20A%20Slug", "/v1/tenants/%00/keys", "/v1/keys/XYZ"])
def test_malformed_ids_in_paths_are_404(client, admin, path):
    method = client.delete if path.startswith("/v1/keys") else client.get
    response = method(path, headers=auth(admin))
    assert response.status_code == 404 and response.is_json
