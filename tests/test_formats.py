"""What dashboards and generated clients rely on: CSV, conditional GET,
operationIds and CORS."""
import csv
import datetime as dt
import io
import json
from decimal import Decimal

import pytest

from conftest import auth, build_app
from data import UTC, record, store

T0 = dt.datetime(2026, 11, 2, 9, tzinfo=UTC)
WINDOW = {"from": "2026-11-01T00:00:00Z", "to": "2026-11-04T00:00:00Z"}
CSV = {"Accept": "text/csv"}


@pytest.fixture
def usage(app, keys):
    keys.tenant("acme")
    keys.tenant("globex")
    keys.tenant("ops", allows_superusers=True)
    store(app, [
        record("acme", T0, cost="0.1", duration=100, model="gpt-4o"),
        record("acme", T0 + dt.timedelta(days=1), cost="0.2", duration=300, operation="summarize"),
        record("acme", T0, status="error", error_class='Quote"d, error'),
        record("globex", T0, cost="123456.789012", duration=50),
    ])
    return {"acme": keys.key("acme"), "admin": keys.key("ops", superuser=True)}


def read_csv(response):
    assert response.status_code == 200
    assert response.mimetype == "text/csv" and response.mimetype_params["charset"] == "utf-8"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="usage')
    assert response.headers["Content-Disposition"].endswith('.csv"')
    text = response.get_data(as_text=True)
    assert text.endswith("\r\n")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_tenant_usage_as_csv(client, usage):
    json_body = client.get("/v1/usage", headers=auth(usage["acme"]), query_string=WINDOW).get_json()
    [row] = read_csv(client.get("/v1/usage", headers={**auth(usage["acme"]), **CSV}, query_string=WINDOW))
    assert row["tenant_id"] == "acme" and row["from"] == "2026-11-01T00:00:00+00:00"
    assert row["total_calls"] == "3" and row["failed_calls"] == "1"
    assert row["total_cost_usd"] == "0.300000"
    assert Decimal(row["call_duration_p95"]) == Decimal(str(json_body["call_duration"]["p95"]))
    assert row["input_tokens_total"] == str(json_body["input_tokens"]["total"])


def test_all_usage_as_csv_has_a_total_row(client, usage):
    rows = read_csv(client.get("/v1/usage/all", headers={**auth(usage["admin"]), **CSV}, query_string=WINDOW))
    assert [r["tenant_id"] for r in rows] == ["acme", "globex", ""]
    assert rows[1]["total_cost_usd"] == "123456.789012"
    assert rows[2]["total_cost_usd"] == "123457.089012" and rows[2]["total_calls"] == "4"


def test_series_as_csv_one_row_per_bucket_and_group(client, usage):
    rows = read_csv(client.get("/v1/usage/all/series", headers={**auth(usage["admin"]), **CSV},
                               query_string={**WINDOW, "group_by": "tenant_id,error_class",
                                             "tz": "Asia/Kolkata"}))
    assert list(rows[0])[:4] == ["bucket_start", "bucket_end", "tenant_id", "error_class"]
    by_key = {(r["bucket_start"], r["tenant_id"], r["error_class"]): r for r in rows}
    assert by_key[("2026-11-02T00:00:00+05:30", "acme", 'Quote"d, error')]["failed_calls"] == "1"
    assert by_key[("2026-11-02T00:00:00+05:30", "globex", "")]["total_cost_usd"] == "123456.789012"
    assert by_key[("2026-11-03T00:00:00+05:30", "acme", "")]["total_cost_usd"] == "0.200000"
    plain = read_csv(client.get("/v1/usage/series", headers={**auth(usage["acme"]), **CSV},
                                query_string=WINDOW))
    assert [r["bucket_start"] for r in plain] == [
        "2026-11-01T00:00:00+00:00", "2026-11-02T00:00:00+00:00", "2026-11-03T00:00:00+00:00"]
    assert [r["total_calls"] for r in plain] == ["0", "2", "1"]


@pytest.mark.parametrize("path,key", [("/v1/usage", "acme"), ("/v1/usage/all", "admin"),
                                      ("/v1/usage/series", "acme"), ("/v1/usage/all/series", "admin")])
def test_conditional_get_answers_304_until_the_data_changes(app, client, usage, path, key):
    for accept in ({}, CSV):
        headers = {**auth(usage[key]), **accept}
        first = client.get(path, headers=headers, query_string=WINDOW)
        etag = first.headers["ETag"]
        assert first.headers["Vary"] == "Accept, Authorization, X-API-Key"  # app/caching.py
        again = client.get(path, headers={**headers, "If-None-Match": etag}, query_string=WINDOW)
        assert again.status_code == 304 and again.data == b""
        other = client.get(path, headers={**auth(usage[key]), **({} if accept else CSV),
                                          "If-None-Match": etag}, query_string=WINDOW)
        assert other.status_code == 200  # the other representation has its own ETag
    etag = client.get(path, headers=auth(usage[key]), query_string=WINDOW).headers["ETag"]
    store(app, [record("acme", T0 + dt.timedelta(hours=1))])
    changed = client.get(path, headers={**auth(usage[key]), "If-None-Match": etag}, query_string=WINDOW)
    assert changed.status_code == 200 and changed.headers["ETag"] != etag


def test_every_operation_has_a_unique_descriptive_operation_id(client):
    spec = client.get("/openapi.json").get_json()
    ids = [operation.get("operationId") for item in spec["paths"].values()
           for method, operation in item.items() if method in ("get", "post", "put", "patch", "delete")]
    assert None not in ids and len(ids) == len(set(ids))
    assert {"getTenantUsage", "getAllUsage", "getTenantUsageSeries", "getAllUsageSeries",
            "recordCalls"} <= set(ids)
    responses = spec["paths"]["/v1/usage/series"]["get"]["responses"]
    assert set(responses["200"]["content"]) == {"application/json", "text/csv"}
    assert "304" in responses


def test_json_is_the_first_media_type_of_every_answer_that_has_several(client):
    """Swagger UI's "Execute" asks for the first media type of the answer: JSON, not CSV."""
    spec = json.loads(client.get("/openapi.json").get_data(as_text=True))  # in the document's order
    several = {(path, method): list(response["content"])
               for path, item in spec["paths"].items() for method, operation in item.items()
               if method in ("get", "post", "put", "patch", "delete")
               for response in operation["responses"].values() if len(response.get("content", {})) > 1}
    for route in ("/v1/usage/series", "/v1/usage/all/series", "/v1/usage", "/v1/usage/all",
                  "/v1/usage/calls", "/v1/usage/all/calls", "/"):
        assert (route, "get") in several, route
    assert all(types[0] == "application/json" for types in several.values()), several


def test_cors_only_for_configured_origins(database_url, tmp_path, keys):
    app = build_app(database_url, tmp_path, migrate=False)
    app.config["CORS_ORIGINS"] = ""
    plain = app.test_client().options("/v1/usage", headers={
        "Origin": "https://dash.example", "Access-Control-Request-Method": "GET"})
    assert "Access-Control-Allow-Origin" not in plain.headers


def test_cors_preflight_allows_the_key_headers(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("CORS_ORIGINS", "https://dash.example, https://ops.example")
    app = build_app(database_url, tmp_path)
    client = app.test_client()
    preflight = client.options("/v1/usage/series", headers={
        "Origin": "https://dash.example", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "X-API-Key, If-None-Match"})
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://dash.example"
    allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
    assert "x-api-key" in allowed and "if-none-match" in allowed
    stranger = client.options("/v1/usage", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert "Access-Control-Allow-Origin" not in stranger.headers
    answer = client.get("/v1/usage", headers={"Origin": "https://ops.example"})
    assert answer.headers["Access-Control-Allow-Origin"] == "https://ops.example"
    assert "ETag" in answer.headers.get("Access-Control-Expose-Headers", "") or answer.status_code == 401
    health = client.get("/healthz", headers={"Origin": "https://dash.example"})
    assert "Access-Control-Allow-Origin" not in health.headers
