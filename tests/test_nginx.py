"""The nginx file in front of a live gunicorn: slow clients, and the errors nginx answers itself.

Starts Debian's nginx with deploy/nginx.conf.template rendered as the
production recipe renders it, by `flask --app wsgi deploy nginx-conf` with
BIND (gunicorn's address), NGINX_LISTEN (a free loopback port) and
NGINX_LOG_DIR (a temporary folder) in its environment, nothing edited by
hand; with a prefix, pid file and temporary folders of its own, as `nobody`
when run as root. Every loop is bounded; timeouts are liveness guards, never
speed requirements.
"""
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest

from conftest import ROOT, auth, free_port, gunicorn

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SLOW_CLIENTS = 50
LIVENESS_S = 10  # a generous guard against a hang, not a measure of speed
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

if not os.path.exists(NGINX):
    if os.environ.get("CI"):
        raise RuntimeError("nginx is not installed (.ci/run installs Debian's nginx)")
    pytest.skip("nginx is not installed (apt-get install nginx)", allow_module_level=True)


def render(upstream, *options, **env):
    """`flask --app wsgi deploy nginx-conf *options` with BIND=`upstream` and `env`."""
    env = {**os.environ, "BIND": upstream, **env}
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "deploy", "nginx-conf", *options],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return result.stdout


@contextlib.contextmanager
def nginx(upstream, *options, **env):
    """nginx on a free port in front of `upstream`, its file rendered with `options` and
    `env` besides; yields (base URL, folder)."""
    folder = tempfile.mkdtemp(prefix="prod-nginx-")
    port = free_port()
    text = render(upstream, *options, NGINX_LISTEN=f"127.0.0.1:{port}", NGINX_LOG_DIR=folder,
                  DATABASE_URL=f"sqlite:///{folder}/unused.db", **env)  # the command opens no database
    assert f"server {upstream};" in text and f"listen 127.0.0.1:{port};" in text
    with open(f"{folder}/usage.conf", "w") as conf:
        conf.write(text)
    with open(f"{folder}/nginx.conf", "w") as conf:
        conf.write(f"""
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {folder}/client_body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    include {folder}/usage.conf;
}}
""")
    command = [NGINX, "-p", folder, "-c", f"{folder}/nginx.conf", "-e", f"{folder}/error.log", "-g", "daemon off;"]
    if os.geteuid() == 0:  # not as root: as nobody, in a folder it owns
        shutil.chown(folder, "nobody", "nogroup")
        for name in os.listdir(folder):
            shutil.chown(f"{folder}/{name}", "nobody", "nogroup")
        command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            if server.poll() is not None:
                raise RuntimeError("nginx did not start: " + open(f"{folder}/error.log").read())
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", folder
    finally:
        server.terminate()
        server.wait(timeout=LIVENESS_S)
        shutil.rmtree(folder, ignore_errors=True)


def raw(base, data, source="127.0.0.1"):
    """Send raw bytes; return (status, headers dict, body bytes) of the answer."""
    with socket.create_connection(("127.0.0.1", urlsplit(base).port), timeout=LIVENESS_S,
                                  source_address=(source, 0)) as conn:
        conn.sendall(data)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def get(url, headers=None):
    """(status, headers, body) of a GET; waits at most LIVENESS_S."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=LIVENESS_S) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def logged(path, text):
    """Whether `text` shows up in the log at `path` within LIVENESS_S. nginx writes a
    request's access-log line after the response has left, so the client may read first."""
    deadline = time.monotonic() + LIVENESS_S
    while True:
        with open(path) as log:
            if text in log.read():
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def slow_clients(base, count=SLOW_CLIENTS):
    """`count` connections that have sent a request line and one header, and no more yet."""
    port = urlsplit(base).port
    clients = []
    for _ in range(count):
        conn = socket.create_connection(("127.0.0.1", port), timeout=LIVENESS_S)
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        clients.append(conn)
    return clients


@sqlite_only
def test_fifty_slow_clients_do_not_stall_the_service_behind_nginx(app, keys):
    keys.tenant("acme")
    key = keys.key("acme")
    with gunicorn(app.config["DATABASE_URL"], workers=2, PROXY_COUNT="1") as direct:
        upstream = urlsplit(direct).netloc
        with nginx(upstream) as (base, _):
            clients = slow_clients(base)
            waits = []
            for round_ in range(6):  # each slow client trickles a header line every 0.5 s
                for conn in clients:
                    conn.sendall(f"X-Trickle-{round_}: {round_}\r\n".encode())
                for path, headers in (("/healthz", {}), ("/v1/usage", auth(key))):
                    started = time.monotonic()
                    status, _, _ = get(base + path, headers)
                    waits.append(time.monotonic() - started)
                    assert status == 200, path
                time.sleep(0.5)
            # Finished at last, every slow request is answered too.
            for conn in clients:
                conn.sendall(b"Connection: close\r\n\r\n")
            assert all(conn.recv(64).startswith(b"HTTP/1.1 200") for conn in clients)
            for conn in clients:
                conn.close()
            print(f"\nthrough nginx, beside {SLOW_CLIENTS} slow clients: {len(waits)} requests, "
                  f"max {max(waits) * 1000:.1f} ms")

        # The control: the same slow clients straight at gunicorn hold both
        # workers, and /healthz waits behind them.
        clients = slow_clients(direct)
        try:
            with pytest.raises((TimeoutError, urllib.error.URLError)):
                urllib.request.urlopen(direct + "/healthz", timeout=2)
        finally:
            for conn in clients:
                conn.close()


def assert_json_error(status, headers, body, code, name):
    assert status == code, body
    assert headers["content-type"] == "application/json", headers
    error = json.loads(body)
    assert (error["code"], error["status"]) == (code, name)
    assert re.fullmatch(r"[0-9a-f]{32}", error["request_id"]) and headers["x-request-id"] == error["request_id"]
    return error


@sqlite_only
def test_nginx_answers_its_own_errors_as_json(app, keys):
    # The same MAX_CONTENT_LENGTH for the service and the rendered file, as in production.
    limit = 1024 * 1024
    with gunicorn(app.config["DATABASE_URL"], workers=2, PROXY_COUNT="1", MAX_CONTENT_LENGTH=str(limit)) as direct, \
            nginx(urlsplit(direct).netloc, MAX_CONTENT_LENGTH=str(limit)) as (base, folder):
        head = b"Host: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
        answer = raw(base, b"POST /v1/usage/calls HTTP/1.1\r\n" + head +
                     f"Content-Length: {limit + 1}\r\n\r\n".encode())
        error = assert_json_error(*answer, 413, "Request Entity Too Large")
        assert f"{limit:,} bytes (MAX_CONTENT_LENGTH)" in error["message"]
        # A body of exactly the limit passes nginx and reaches the service (which reads it as JSON).
        status, headers, body = raw(base, b"POST /v1/usage/calls HTTP/1.1\r\n" + head +
                                    f"Content-Length: {limit}\r\n\r\n".encode() + b" " * limit)
        assert status == 401 and json.loads(body)["code"] == 401  # the service's answer: no key
        assert_json_error(*raw(base, b"GET /v1/usage?x=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
                          414, "Request URI Too Large")
        assert_json_error(*raw(base, b"GET /v1/usage HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"),
                          431, "Request Header Fields Too Large")
        assert_json_error(*raw(base, b"NOT HTTP\r\n\r\n"), 400, "Bad Request")
        # /metrics: loopback may (through nginx, with PROXY_COUNT=1, whatever
        # X-Forwarded-For the client wrote); another address gets nginx's 404.
        assert get(base + "/metrics", {"X-Forwarded-For": "203.0.113.9"})[0] == 200
        request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        assert_json_error(*raw(base, request, source="127.0.0.2"), 404, "Not Found")

        # Request ids: the client's sane one reaches the service; otherwise
        # nginx's, which the service keeps, so both logs share it.
        status, headers, body = get(base + "/v1/usage", {"X-Request-ID": "client-7"})
        assert status == 401 and json.loads(body)["request_id"] == "client-7" == headers["X-Request-ID"]
        status, headers, body = get(base + "/v1/usage", {"X-Request-ID": "not sane"})
        generated = json.loads(body)["request_id"]
        assert status == 401 and re.fullmatch(r"[0-9a-f]{32}", generated)
        assert logged(f"{folder}/usage.access.log", f"request_id={generated}")


@sqlite_only
def test_nginx_answers_502_and_504_as_json(app):
    with nginx(f"127.0.0.1:{free_port()}") as (base, _):  # nothing listens there
        assert_json_error(*get(base + "/v1/usage"), 502, "Bad Gateway")
    with socket.socket() as silent:  # accepts connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        upstream = "127.0.0.1:%d" % silent.getsockname()[1]
        with nginx(upstream, "--read-timeout", "1") as (base, _):
            assert_json_error(*get(base + "/healthz"), 504, "Gateway Timeout")
