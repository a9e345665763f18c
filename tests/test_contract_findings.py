"""Hostile inputs that reached a 500 or were stored wrongly: each is now a
clear 4xx JSON error naming the field (HTTP) or a `line N: reason` report
(`calls import`), with nothing stored, or an empty page.

The first ones were found by the contract fuzzer (tests/test_contract.py);
the later ones (deep nesting, huge numbers and exponents, trailing newlines,
chunked bodies over the limit) by trying the service as an attacker would.
"""
import datetime as dt
import http.client
import json
from urllib.parse import urlsplit

import pytest

from app.models import LlmCall, Tenant
from conftest import auth
from data import UTC, record, to_json


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


# --- Found by hand: each failed before its fix ---

T0 = dt.datetime(2026, 11, 1, tzinfo=UTC)
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def acme(keys):
    keys.tenant("acme")
    keys.tenant("ops", allows_superusers=True)
    return {"tenant": keys.key("acme"), "admin": keys.key("ops", superuser=True)}


def stored_calls(app):
    with app.app_context():
        return LlmCall.select().count()


def post_raw(client, key, text, path="/v1/usage/calls"):
    response = client.post(path, data=text, headers={**auth(key), **JSON})
    assert response.is_json, response.data[:200]
    return response.status_code, response.get_json()


def call_json(**changes):
    """A valid call record as JSON text, with some fields' JSON text replaced."""
    fields = {k: json.dumps(v) for k, v in to_json(record("acme", T0)).items()}
    fields.update(changes)
    return "{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}"


def calls_error(body, field):
    """The reasons given for `field` of the first record of a rejected batch."""
    return body["errors"]["json"]["calls"]["0"][field]


def test_deeply_nested_body_is_400_not_a_crash(app, client, acme):
    status, body = post_raw(client, acme["tenant"], '{"calls":' + "[" * 100_000)
    assert status == 400 and "nested" in body["message"]
    assert stored_calls(app) == 0


@pytest.mark.parametrize("field", ["input_tokens", "call_duration_ms", "output_tokens"])
def test_integer_with_thousands_of_digits_is_422_naming_the_field(app, client, acme, field):
    status, body = post_raw(client, acme["tenant"], '{"calls": [' + call_json(**{field: "9" * 5001}) + "]}")
    assert status == 422 and calls_error(body, field)
    assert stored_calls(app) == 0


@pytest.mark.parametrize("cost", ['"1e999999999"', "1e999999999", '"1e-999999999"', "1e-999999999",
                                  '"-1e-999999999"', "9" * 5001, '"1E+7"'])
def test_cost_with_an_absurd_exponent_is_422_not_a_crash_nor_zero(app, client, acme, cost):
    status, body = post_raw(client, acme["tenant"], '{"calls": [' + call_json(cost_usd=cost) + "]}")
    assert status == 422 and calls_error(body, "cost_usd")
    assert stored_calls(app) == 0


def test_cost_with_trailing_zeros_past_six_places_is_still_exact(app, client, acme):
    status, body = post_raw(client, acme["tenant"], '{"calls": [' + call_json(cost_usd='"0.30000000000"') + "]}")
    assert status == 201
    with app.app_context():
        assert LlmCall.get().cost_micro_usd == 300_000


@pytest.mark.parametrize("field,value", [
    ("operation", "analyze\n"),
    ("operation", "a" * 64 + "\n"),
    ("tenant_id", "acme\n"),
])
def test_a_trailing_newline_does_not_pass_a_pattern(app, client, acme, field, value):
    status, body = post_raw(client, acme["admin"], '{"calls": [' + call_json(**{field: json.dumps(value)}) + "]}")
    assert status == 422 and calls_error(body, field)
    assert stored_calls(app) == 0


@pytest.mark.parametrize("tenant_id", ["x\n", "x\n\n", "a" * 64 + "\n"])
def test_tenant_id_with_a_trailing_newline_is_refused(app, client, runner, acme, tenant_id):
    response = client.post("/v1/tenants", headers=auth(acme["admin"]), json={"tenant_id": tenant_id})
    assert response.status_code == 422 and "tenant_id" in response.get_json()["errors"]["json"]
    result = runner.invoke(args=["tenants", "create", tenant_id])
    assert result.exit_code == 1 and "Invalid tenant_id" in result.output
    with app.app_context():
        assert sorted(t.tenant_id for t in Tenant.select()) == ["acme", "ops"]


@pytest.mark.parametrize("field,longest", [("operation", 64), ("model", 255), ("error_class", 255)])
def test_lengths_are_the_same_on_both_engines(app, client, acme, field, longest):
    base = to_json(record("acme", T0, status="error"))
    fits = {**base, field: "a" * longest}
    response = client.post("/v1/usage/calls", headers=auth(acme["tenant"]), json={"calls": [fits]})
    assert response.status_code == 201
    too_long = {**to_json(record("acme", T0, status="error")), field: "a" * (longest + 1)}
    response = client.post("/v1/usage/calls", headers=auth(acme["tenant"]), json={"calls": [too_long]})
    assert response.status_code == 422 and calls_error(response.get_json(), field)
    assert stored_calls(app) == 1


def test_import_reports_hostile_lines_by_number_and_stores_nothing(app, runner, acme):
    lines = [
        call_json(),
        '{"calls":' + "[" * 100_000,
        call_json(input_tokens="9" * 5001),
        call_json(cost_usd='"1e999999999"'),
        call_json(cost_usd="1e-999999999"),
        call_json(operation=json.dumps("analyze\n")),
    ]
    result = runner.invoke(args=["calls", "import", "-"], input="\n".join(lines) + "\n")
    assert result.exit_code == 1
    for number, reason in [(2, "not valid JSON (nested too deeply)"), (3, "input_tokens"), (4, "cost_usd"),
                           (5, "cost_usd"), (6, "operation")]:
        assert f"line {number}: {reason}" in result.output, (number, result.output)
    assert "Traceback" not in result.output
    assert stored_calls(app) == 0


def test_chunked_body_over_the_limit_is_413(app, acme, live_server):
    """gunicorn passes chunked bodies on unlimited; the service must cut them off itself."""
    limit = app.config["MAX_CONTENT_LENGTH"]
    url = urlsplit(live_server)
    for body in ('{"calls": [' + ", ".join([call_json()] * (limit // 250)) + "]}", "[" * (limit + 10)):
        assert len(body) > limit
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        chunks = (body[i:i + 65536].encode() for i in range(0, len(body), 65536))
        connection.request("POST", "/v1/usage/calls", body=chunks, encode_chunked=True,
                           headers={**auth(acme["tenant"]), **JSON, "Transfer-Encoding": "chunked"})
        response = connection.getresponse()
        payload = json.loads(response.read())
        connection.close()
        assert response.status == 413, payload
        assert f"{limit:,}" in payload["message"]
    assert stored_calls(app) == 0


def test_413_says_the_limit(app, client, acme):
    app.config["MAX_CONTENT_LENGTH"] = 2048
    response = client.post("/v1/usage/calls", headers=auth(acme["tenant"]),
                           json={"calls": [to_json(record("acme", T0)) for _ in range(20)]})
    assert response.status_code == 413
    assert "2,048 bytes" in response.get_json()["message"]
