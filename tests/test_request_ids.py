"""Request ids on every response, error body and log line; LOG_FORMAT=json."""
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from conftest import ROOT, auth, build_app, gunicorn

GENERATED = re.compile(r"[0-9a-f]{32}")
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_a_sane_client_id_is_kept_and_anything_else_replaced(client):
    for offered in ("abc-123", "0f8fad5b-d9cb-469f-a165-70867728950e", "Root=1-5759e988:x/y+z", "a" * 128):
        response = client.get("/healthz", headers={"X-Request-ID": offered})
        assert response.headers["X-Request-ID"] == offered
    seen = set()
    for offered in (None, "", "a b", "a" * 129, "id\u00e9", 'x"y', "x;y"):
        response = client.get("/healthz", headers={"X-Request-ID": offered} if offered is not None else {})
        generated = response.headers["X-Request-ID"]
        assert GENERATED.fullmatch(generated), offered
        seen.add(generated)
    assert len(seen) == 7


def test_every_error_body_carries_the_request_id(client, keys, tmp_path):
    keys.tenant("acme")
    key = keys.key("acme")
    cases = [
        ("get", "/v1/usage", {}, None, 401),
        ("get", "/nope", {}, None, 404),
        ("post", "/v1/usage", auth(key), None, 405),
        ("post", "/v1/usage/calls", auth(key) | {"Content-Type": "application/json"}, b"{", 400),
        ("post", "/v1/usage/calls", auth(key) | {"Content-Type": "text/plain"}, b"x", 415),
        ("get", "/v1/usage?from=yesterday", auth(key), None, 422),
        ("post", "/v1/usage/calls", auth(key) | {"Content-Type": "application/json"}, b" " * (8 * 2**20 + 1), 413),
    ]
    for number, (method, path, headers, data, status) in enumerate(cases):
        request_id = f"case-{number}"
        response = getattr(client, method)(path, headers=headers | {"X-Request-ID": request_id}, data=data)
        assert response.status_code == status, path
        body = response.get_json()
        assert body["code"] == status and body["request_id"] == request_id, body
        assert response.headers["X-Request-ID"] == request_id
    down = build_app(f"sqlite:///{tmp_path}/missing-dir/usage.db", tmp_path, migrate=False).test_client()
    response = down.get("/v1/usage", headers=auth(key) | {"X-Request-ID": "down-1"})
    assert response.status_code == 503 and response.get_json()["request_id"] == "down-1"


def test_every_log_line_of_a_request_carries_its_id(tmp_path, capsys):
    down = build_app(f"sqlite:///{tmp_path}/missing-dir/usage.db", tmp_path, migrate=False).test_client()
    capsys.readouterr()
    down.get("/v1/usage", headers=auth("usk_0123456789abcdef_" + "a" * 43) | {"X-Request-ID": "trace-me"})
    lines = capsys.readouterr().err.splitlines()
    # The warning about the database and the request's own line.
    assert len(lines) == 2, lines
    assert all("[trace-me]" in line for line in lines), lines
    assert "WARNING" in lines[0] and "database unavailable" in lines[0]
    assert re.search(r"usage\.access: GET /v1/usage 503 [0-9.]+ ms client=127\.0\.0\.1$", lines[1]), lines[1]


@sqlite_only
def test_json_logs_are_one_object_per_line_and_never_show_a_secret(app, keys, tmp_path):
    keys.tenant("acme")
    key = keys.key("acme")
    _, key_id, secret = key.split("_", 2)  # the secret (base64url) may itself hold "_"
    wrong = f"usk_{key_id}_{'Z' * 43}"
    log = tmp_path / "gunicorn.log"
    with gunicorn(app.config["DATABASE_URL"], workers=2, log=log, LOG_FORMAT="json") as base:
        ok = urllib.request.Request(base + "/v1/usage", headers=auth(key) | {"X-Request-ID": "json-ok"})
        urllib.request.urlopen(ok, timeout=30).close()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(
                base + "/v1/usage", headers={"X-API-Key": wrong, "X-Request-ID": "json-401"}), timeout=30)
        assert refused.value.code == 401
    text = log.read_text()
    assert secret not in text and "Z" * 43 not in text
    entries = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    assert all({"time", "level", "logger", "message", "pid", "request_id"} <= set(e) for e in entries)
    assert any(e["logger"] == "gunicorn.error" and "Booting worker" in e["message"] for e in entries)
    by_id = {e["request_id"]: e for e in entries if e["logger"] == "usage.access"}
    assert by_id["json-ok"] | {"time": None, "duration_ms": None, "message": None, "pid": None} == {
        "time": None, "level": "INFO", "logger": "usage.access", "message": None, "pid": None,
        "request_id": "json-ok", "method": "GET", "path": "/v1/usage", "route": "/v1/usage",
        "status": 200, "duration_ms": None, "tenant": "acme", "key_id": key_id, "client": "127.0.0.1"}
    assert by_id["json-ok"]["duration_ms"] > 0
    assert (by_id["json-401"]["status"], by_id["json-401"]["tenant"], by_id["json-401"]["key_id"]) == (401, None, None)


@pytest.mark.parametrize("variable, value", [
    ("LOG_FORMAT", "xml"), ("PROXY_COUNT", "one"), ("METRICS_ALLOW", "localhost"),
    ("RATE_LIMIT_AUTH_FAILURES", "twenty a second"), ("RATE_LIMIT_PER_KEY", "5 per fortnight"),
    ("REDIS_URL", "memcached://127.0.0.1"),
])
def test_an_operation_setting_that_cannot_work_stops_the_start_naming_it(tmp_path, variable, value):
    result = subprocess.run([sys.executable, "-c", "import wsgi"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, variable: value, "DATABASE_URL": f"sqlite:///{tmp_path}/u.db"})
    assert result.returncode != 0 and variable in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
