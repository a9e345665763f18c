"""Issue 23's rough edges: `GET /` for a browser, JSON answers that end with
a newline, and gunicorn's address from the configuration, for gunicorn and
the nginx file alike (tests/test_nginx.py runs that file in a real nginx)."""
import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from app.api import index
from app.cli.deploy import bind_address
from app.db import ConfigurationError
from conftest import ROOT, auth

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
LINKS = {"/dashboard", "/docs", "/openapi.json", "/healthz", "/readyz"}


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs, self.tags = [], set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "a":
            self.hrefs.append(dict(attrs)["href"])


def links_of(page):
    parser = Links()
    parser.feed(page)
    return parser


def test_a_browser_gets_a_page_of_links_and_an_api_client_json(client):
    page = client.get("/", headers={"Accept": BROWSER})
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert page.headers["Vary"] == "Accept" and page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    parsed = links_of(page.get_data(as_text=True))
    assert set(parsed.hrefs) == LINKS and len(parsed.hrefs) == len(LINKS)
    assert not parsed.tags & {"script", "style", "img", "form", "iframe"}
    for href in parsed.hrefs:
        assert client.get(href).status_code == 200, href

    for accept in (None, "*/*", "application/json", "application/json, text/html"):
        answer = client.get("/", headers={"Accept": accept} if accept else {})
        assert answer.mimetype == "application/json" and answer.headers["Vary"] == "Accept", accept
        assert set(answer.get_json()["links"].values()) == LINKS


def test_the_page_holds_nothing_from_the_request(client):
    pages = {client.get(path, headers={"Accept": "text/html", **extra}).get_data()
             for path, extra in (("/", {}), ("/?next=<script>alert(1)</script>", {}),
                                 ("/", {"X-Request-ID": "page-<b>", "Host": "evil.example"}))}
    assert pages == {index.PAGE.encode()}


def test_the_page_template_escapes_what_it_shows():
    page = index.render_page({"x": '/a"><script>alert(1)</script>'}, {"x": "<b>bold</b> & co"})
    assert "<script>" not in page and "<b>" not in page
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in page and 'href="/a&#34;&gt;&lt;script&gt;' in page


def test_the_index_documents_both_media_types_json_first(client):
    spec = json.loads(client.get("/openapi.json").get_data(as_text=True))
    assert list(spec["paths"]["/"]["get"]["responses"]["200"]["content"]) == ["application/json", "text/html"]


def ends_with_one_newline(response):
    body = response.get_data()
    return body.endswith(b"\n") and not body.endswith(b"\n\n") and json.loads(body) is not None


def test_every_json_answer_ends_with_a_newline(client, keys):
    keys.tenant("acme")
    keys.tenant("ops", allows_superusers=True)
    admin = auth(keys.key("ops", superuser=True))
    spec = client.get("/openapi.json")
    assert spec.mimetype == "application/json" and ends_with_one_newline(spec)
    window = {"from": "2026-11-01T00:00:00Z", "to": "2026-11-03T00:00:00Z"}
    # Every documented GET without a path parameter: the routes' own answers.
    paths = [path for path, item in spec.get_json()["paths"].items() if "get" in item and "{" not in path]
    assert {"/", "/v1/usage", "/v1/usage/series", "/v1/usage/all/series", "/v1/usage/calls"} <= set(paths)
    answers = {path: client.get(path, headers=admin,
                                query_string=window if path.startswith("/v1/usage") else {}) for path in paths}
    # And errors: flask-smorest's, the app's handlers', the body parser's.
    answers["401"] = client.get("/v1/usage")
    answers["404"] = client.get("/no/such/thing")
    answers["405"] = client.delete("/healthz")
    answers["422"] = client.get("/v1/usage/series", headers=admin, query_string={"bucket": "fortnight"})
    answers["400"] = client.post("/v1/usage/calls", headers={**admin, "Content-Type": "application/json"},
                                 data="{not json")
    json_answers = {name: r for name, r in answers.items() if r.mimetype == "application/json"}
    assert {"/v1/usage", "/v1/usage/series", "/v1/usage/calls", "401", "404", "405", "422", "400"} <= set(json_answers)
    assert [name for name, r in json_answers.items() if not ends_with_one_newline(r)] == []
    assert all(answers[path].status_code == 200 for path in ("/v1/usage", "/v1/usage/series", "/v1/usage/calls"))


@pytest.mark.parametrize("environ,address", [
    ({}, "127.0.0.1:8000"),
    ({"PORT": "9000"}, "127.0.0.1:9000"),
    ({"HOST": "0.0.0.0", "PORT": "8080"}, "0.0.0.0:8080"),
    ({"HOST": "::1"}, "[::1]:8000"),
    ({"BIND": "unix:/run/usage/gunicorn.sock", "PORT": "9000"}, "unix:/run/usage/gunicorn.sock"),
    ({"BIND": " 10.0.0.5:8001 ", "HOST": "ignored"}, "10.0.0.5:8001"),
    ({"BIND": "", "HOST": "", "PORT": ""}, "127.0.0.1:8000"),
])
def test_gunicorns_address_is_bind_else_host_and_port(environ, address):
    assert bind_address(environ) == address


@pytest.mark.parametrize("environ,named", [
    ({"BIND": "127.0.0.1:8000; evil"}, "BIND"), ({"BIND": "127.0.0.1"}, "BIND"),
    ({"BIND": "unix:relative.sock"}, "BIND"), ({"PORT": "http"}, "HOST and PORT"),
    ({"PORT": "70000"}, "HOST and PORT"), ({"HOST": "a b"}, "HOST and PORT"),
])
def test_an_address_that_cannot_work_is_refused_naming_the_variable(environ, named):
    with pytest.raises(ConfigurationError, match=f"^{named} must give one address"):
        bind_address(environ)


def gunicorn_settings(**environ):
    """bind and timeout, as gunicorn.conf.py sets them in this environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("BIND", "HOST", "PORT") and not k.startswith("DB_")}
    script = "import runpy; c = runpy.run_path('gunicorn.conf.py'); print(c['bind'], c['timeout'])"
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**env, **environ},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    bind, timeout = result.stdout.split()
    return bind, int(timeout)


def test_gunicorn_conf_reads_its_address_and_timeout_from_the_environment():
    assert gunicorn_settings() == ("127.0.0.1:8000", 68)
    assert gunicorn_settings(HOST="0.0.0.0", PORT="9001")[0] == "0.0.0.0:9001"
    assert gunicorn_settings(BIND="unix:/tmp/usage.sock", PORT="9001")[0] == "unix:/tmp/usage.sock"
    assert gunicorn_settings(DB_STATEMENT_TIMEOUT="60")[1] == 2 * (2 + 1 + 60 + 1)


def nginx_conf(runner, *options, **env):
    result = runner.invoke(args=["deploy", "nginx-conf", *options], env=env)
    return result.exit_code, result.output


def directives(text):
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_nginx_file_defaults_are_the_production_ones(runner):
    status, text = nginx_conf(runner, BIND=None, HOST=None, PORT=None, NGINX_LISTEN=None, NGINX_LOG_DIR=None)
    assert status == 0 and not re.search(r"@[A-Z_]+@", text)
    lines = directives(text)
    for line in ("server 127.0.0.1:8000;", "listen 80;", "access_log /var/log/nginx/usage.access.log usage_service;",
                 "client_max_body_size 8388608;", "proxy_read_timeout 75s;"):
        assert line in lines, line
    assert "The body exceeds the limit of 8,388,608 bytes (MAX_CONTENT_LENGTH)." in text
    assert text.startswith("# Rendered by `flask --app wsgi deploy nginx-conf`")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.app_config(MAX_CONTENT_LENGTH=1048576, DB_STATEMENT_TIMEOUT=60)
def test_the_nginx_file_takes_every_value_from_the_configuration(runner):
    status, text = nginx_conf(runner, BIND="unix:/run/usage/gunicorn.sock", NGINX_LISTEN="127.0.0.1:8080",
                              NGINX_LOG_DIR="/srv/usage/logs/")
    assert status == 0
    lines = directives(text)
    for line in ("server unix:/run/usage/gunicorn.sock;", "listen 127.0.0.1:8080;",
                 "access_log /srv/usage/logs/usage.access.log usage_service;",
                 "client_max_body_size 1048576;", f"proxy_read_timeout {2 * (2 + 1 + 60 + 1) + 7}s;"):
        assert line in lines, line
    assert "1,048,576 bytes (MAX_CONTENT_LENGTH)" in text
    # HOST and PORT without BIND, as for gunicorn; options win over the environment.
    status, text = nginx_conf(runner, "--listen", "8081", "--read-timeout", "90", BIND=None, HOST="::1", PORT="9000")
    assert {"server [::1]:9000;", "listen 8081;", "proxy_read_timeout 90s;"} <= set(directives(text))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("options,env,says", [
    ((), {"BIND": "127.0.0.1:8000; include /etc/passwd"}, "BIND must give one address"),
    (("--listen", "80 default_server"), {}, "Invalid value for '--listen'"),
    (("--log-dir", "logs"), {}, "Invalid value for '--log-dir'"),
    (("--log-dir", "/var/log/nginx;"), {}, "Invalid value for '--log-dir'"),
    (("--upstream", "x"), {}, "Invalid value for '--upstream'"),
])
def test_a_value_that_does_not_fit_in_an_nginx_file_is_refused(runner, options, env, says):
    status, output = nginx_conf(runner, *options, **env)
    assert status != 0 and says in output and "server " not in output


def test_a_run_without_postgresql_says_so_in_one_line_at_the_end():
    env = {k: v for k, v in os.environ.items() if k not in ("TEST_DATABASE_URL", "REQUIRE_POSTGRES")}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "tests/test_formats.py", "-k", "operation_id or first_media_type"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout
    said = [line for line in lines if "TEST_DATABASE_URL is not set. `make test-pg`" in line]
    assert said == [lines[-2]], lines[-4:]  # just above pytest's last line
    assert said[0].startswith("2 of 4 tests skipped: they run on PostgreSQL")
    assert not [line for line in lines if line.startswith("SKIPPED")], lines  # not one line per test
