"""Who and what a request is: its id, its client's address, when it started.

- **Request id**: the client's `X-Request-ID` if it is sane (1 to 128
  characters of `A-Z a-z 0-9 . _ : / + = -`, so it is safe in a header, a
  log line and JSON), else a new one (32 hex digits, as nginx's
  `$request_id`). Every response carries it in `X-Request-ID`, every error
  body as `request_id`, every log line of the request (`app/logs.py`).
- **Client address**: the connecting socket's, unless PROXY_COUNT reverse
  proxies are trusted: then werkzeug's ProxyFix takes it from the
  X-Forwarded-For entry that many hops from the right (the one our proxy
  wrote; entries a client wrote to the left of it are ignored). Without
  PROXY_COUNT the header is never read, so a client cannot pick the address
  the rate limits and METRICS_ALLOW see.
- **Start time**: a monotonic clock reading for the duration in logs and metrics.
- **Whether its route needs a key**: the matched view carries `requires_api_key`
  (app/auth.py); the rate limits and the cache headers ask.
"""
import re
import time
import uuid

from flask import current_app, g, has_request_context, request
from werkzeug.middleware.proxy_fix import ProxyFix

from .db.handle import ConfigurationError  # not .db: app.db imports this module

HEADER = "X-Request-ID"
SANE_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


def current_id():
    """The id of the request being served, else None (outside a request)."""
    return g.get("request_id") if has_request_context() else None


def client_address():
    return request.remote_addr or "unknown"


def started():
    return g.get("request_started", time.monotonic())


def route_requires_key():
    """False also when no route matched (404, 405)."""
    view = current_app.view_functions.get(request.endpoint)
    return getattr(view, "requires_api_key", False)


def init_app(app):
    """Registered first, so that everything after it (rate limits, errors) has the id."""
    count = app.config["PROXY_COUNT"]
    if count:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count)
    app.before_request(_begin)
    app.after_request(_tag_response)


def proxy_count(text):
    """PROXY_COUNT: how many reverse proxies in front of gunicorn set X-Forwarded-For."""
    if not (text or "0").isdigit():
        raise ConfigurationError(f"PROXY_COUNT must be a whole number of proxies (0: none), not {text!r}")
    return int(text or 0)


def _begin():
    g.request_started = time.monotonic()
    offered = request.headers.get(HEADER, "")
    g.request_id = offered if SANE_ID.fullmatch(offered) else uuid.uuid4().hex


def _tag_response(response):
    if "request_id" in g:
        response.headers[HEADER] = g.request_id
    return response
