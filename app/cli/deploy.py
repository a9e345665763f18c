"""Where gunicorn listens, and `flask --app wsgi deploy nginx-conf`.

One address, one place: gunicorn.conf.py binds to `bind_address()`, and the
nginx file proxies to the same address, so that the production recipe
(docs/production.md) works with no file edited:

    BIND        gunicorn's address, as gunicorn writes it: `HOST:PORT`,
                `[::1]:PORT` or `unix:/run/usage/gunicorn.sock`.
    HOST, PORT  used when BIND is unset; defaults 127.0.0.1 and 8000.
                (`make run HOST=… PORT=…` passes the same as --bind.)

`deploy nginx-conf` writes deploy/nginx.conf.template to standard output
with its @NAMES@ filled in: the upstream from the address above, nginx's own
`listen` (NGINX_LISTEN, default 80) and access-log folder (NGINX_LOG_DIR,
default /var/log/nginx), the body limit and its 413 message from the
service's MAX_CONTENT_LENGTH, and nginx's `proxy_read_timeout` 7 s longer
than gunicorn's timeout (which follows the database limits). Options
override each. A value that does not fit in an nginx file (a space, a `;`)
is refused with one line naming it. The command opens no database.
"""
import math
import os
import re
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from ..api.blueprint import too_large_message
from ..db import ConfigurationError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = "8000"
DEFAULT_LISTEN = "80"
DEFAULT_LOG_DIR = "/var/log/nginx"
# nginx waits this much longer than gunicorn's timeout for an answer, so that
# gunicorn's own answer (a 503 past a database limit) reaches the client.
READ_TIMEOUT_MARGIN = 7
TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf.template"

_PORT = r"(?:[1-9][0-9]{0,4})"
_HOST = r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])"
ADDRESS = re.compile(rf"(?:unix:/[^\s;{{}}'\"$#\\]+|{_HOST}:{_PORT})")
LISTEN = re.compile(rf"(?:{_PORT}|{_HOST}:{_PORT})")
FOLDER = re.compile(r"/[^\s;{}'\"$#\\]*")
PLACEHOLDER = re.compile(r"@[A-Z_]+@")
RENDERED = ("# Rendered by `flask --app wsgi deploy nginx-conf` from deploy/nginx.conf.template:\n"
            "# to change it, change the configuration (or the template) and render it again.\n#\n")


def bind_address(environ=None):
    """gunicorn's address: BIND, else HOST:PORT; ConfigurationError names a bad one."""
    environ = os.environ if environ is None else environ
    bind = environ.get("BIND", "").strip()
    variable = "BIND"
    if not bind:
        host = environ.get("HOST", "").strip() or DEFAULT_HOST
        port = environ.get("PORT", "").strip() or DEFAULT_PORT
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 address
        bind, variable = f"{host}:{port}", "HOST and PORT"
    if not _valid_address(bind):
        raise ConfigurationError(
            f"{variable} must give one address such as 127.0.0.1:8000 or unix:/run/usage.sock, not {bind!r}")
    return bind


def _valid_address(address):
    return ADDRESS.fullmatch(address) is not None and (
        address.startswith("unix:") or int(address.rsplit(":", 1)[1]) <= 65535)


def worker_timeout(connect, statistics, statement):
    """gunicorn's timeout (gunicorn.conf.py says why): twice the longest
    database wait, each limit with 1 s of grace, and at least 60 s."""
    longest_database_wait = connect + 1 + max(statistics, statement) + 1
    return max(60, math.ceil(2 * longest_database_wait))


def nginx_conf(upstream, listen=DEFAULT_LISTEN, log_dir=DEFAULT_LOG_DIR, max_body=8 * 1024 * 1024,
               read_timeout=75):
    """The text of deploy/nginx.conf.template with these values."""
    values = {
        "@UPSTREAM@": upstream,
        "@LISTEN@": listen,
        "@LOG_DIR@": log_dir.rstrip("/") or "/",
        "@MAX_BODY_BYTES@": str(int(max_body)),
        "@MAX_BODY_MESSAGE@": too_large_message(int(max_body)),
        "@READ_TIMEOUT@": f"{int(read_timeout)}s",
    }
    text = RENDERED + TEMPLATE.read_text()
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    left = PLACEHOLDER.findall(text)
    assert not left, f"{TEMPLATE.name}: no value for {', '.join(left)}"
    return text


deploy_cli = AppGroup("deploy", help="Configuration files for production (no database needed).")


def _checked(valid, what):
    def check(ctx, param, value):
        if value is not None and not valid(value):
            raise click.BadParameter(f"{value!r} is not {what}.")
        return value

    return check


@deploy_cli.command("nginx-conf", short_help="Print the nginx file for this configuration.")
@click.option("--upstream", callback=_checked(_valid_address, "an address such as 127.0.0.1:8000 or unix:/path"),
              help="gunicorn's address. Default: BIND, else HOST:PORT, else 127.0.0.1:8000 (as gunicorn.conf.py).")
@click.option("--listen", envvar="NGINX_LISTEN", default=DEFAULT_LISTEN, show_default=True,
              callback=_checked(LISTEN.fullmatch, "a port or address:port"),
              help="nginx's port, or address:port (env NGINX_LISTEN).")
@click.option("--log-dir", envvar="NGINX_LOG_DIR", default=DEFAULT_LOG_DIR, show_default=True,
              callback=_checked(FOLDER.fullmatch, "an absolute path without spaces or quotes"),
              help="The folder of nginx's access log, usage.access.log (env NGINX_LOG_DIR).")
@click.option("--read-timeout", type=click.IntRange(min=1),
              help="Seconds nginx waits for gunicorn's answer. Default: gunicorn's timeout "
                   f"(from the DB_* limits) + {READ_TIMEOUT_MARGIN}.")
def nginx_conf_command(upstream, listen, log_dir, read_timeout):
    """Write deploy/nginx.conf.template, filled in from the configuration, to standard output."""
    config = current_app.config
    if upstream is None:
        try:
            upstream = bind_address()
        except ConfigurationError as error:
            raise click.ClickException(str(error)) from None
    if read_timeout is None:
        read_timeout = READ_TIMEOUT_MARGIN + worker_timeout(
            float(config["DB_CONNECT_TIMEOUT"]), float(config["DB_STATISTICS_TIMEOUT"]),
            float(config["DB_STATEMENT_TIMEOUT"]))
    click.echo(nginx_conf(upstream, listen, log_dir, config["MAX_CONTENT_LENGTH"], read_timeout), nl=False)
