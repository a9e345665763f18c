"""Logging: one line per request, and the request id on every line of a request.

LOG_FORMAT=text (the default) writes lines for people:

    2026-11-28T10:15:02.114Z [4711] INFO [3f2c…] usage.access: GET /v1/usage 200 12.4 ms tenant=acme key_id=85f553a9d75f434d client=127.0.0.1

LOG_FORMAT=json writes one JSON object per line, for log shippers: `time`
(UTC, RFC 3339), `level`, `logger`, `message`, `pid`, `request_id`, and on a
request's line `method`, `path`, `route` (the URL rule, e.g.
`/v1/tenants/<tenant_id:tenant_id>`), `status`, `duration_ms`, `tenant`,
`key_id` and `client`. A key's secret is never logged: the key id is the
public part of a key that authenticated, and paths carry no keys (keys
travel in headers, query strings are not logged).

The handler sits on the root logger and writes to standard error, where
gunicorn writes its own log (gunicorn.conf.py gives gunicorn's lines the
same format). The service's loggers (`app`, `usage.access`) log at INFO;
everything else keeps Python's default, WARNING.
"""
import datetime as dt
import json
import logging
import sys
import time

from flask import g, request

from . import request_context
from .db.handle import ConfigurationError

FORMATS = ("text", "json")
ACCESS = logging.getLogger("usage.access")
SERVICE_LOGGERS = ("app", "usage.access")
TEXT_FORMAT = "%(asctime)s [%(process)d] %(levelname)s [%(request_id_or_dash)s] %(name)s: %(message)s"
# Fields a request's line carries, in this order (text shows them as name=value).
REQUEST_FIELDS = ("method", "path", "route", "status", "duration_ms", "tenant", "key_id", "client")


class RequestIdFilter(logging.Filter):
    """Gives every record `request_id`: the one it was logged with
    (`extra={"request_id": …}`, e.g. by a thread working for a request), else
    the id of the request being served in this thread, else None."""

    def filter(self, record):
        if getattr(record, "request_id", None) is None:
            record.request_id = request_context.current_id()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; also used by gunicorn.conf.py for gunicorn's own lines."""

    def format(self, record):
        entry = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
            "request_id": getattr(record, "request_id", None) or request_context.current_id(),
        }
        entry.update((name, getattr(record, name)) for name in REQUEST_FIELDS if hasattr(record, name))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _utc(timestamp):
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    converter = time.gmtime  # UTC, as everywhere in the service
    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"

    def __init__(self):
        super().__init__(TEXT_FORMAT)

    def format(self, record):
        record.request_id_or_dash = getattr(record, "request_id", None) or "-"
        return super().format(record)


class StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (as logging's last resort
    does), not the stream it was created with: a test runner swaps it."""

    def __init__(self):
        super().__init__()
        self.addFilter(RequestIdFilter())

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


_handler = None


def log_format(text):
    value = (text or "text").strip().lower()
    if value not in FORMATS:
        raise ConfigurationError(f"LOG_FORMAT must be text or json, not {text!r}")
    return value


def formatter(name):
    return JsonFormatter() if name == "json" else TextFormatter()


def init_app(app):
    """Install the handler (once per process) with the app's LOG_FORMAT, and the request line."""
    global _handler
    if _handler is None:
        _handler = StderrHandler()
        _handler.setLevel(logging.INFO)
        logging.getLogger().addHandler(_handler)
        for name in SERVICE_LOGGERS:
            logging.getLogger(name).setLevel(logging.INFO)
    _handler.setFormatter(formatter(app.config["LOG_FORMAT"]))
    app.after_request(_log_request)


def _log_request(response):
    """The request's line: what the service did for whom, never a secret."""
    rule = request.url_rule
    api_key = g.get("api_key")
    fields = {
        "method": request.method,
        "path": request.path,
        "route": rule.rule if rule is not None else None,
        "status": response.status_code,
        "duration_ms": round((time.monotonic() - request_context.started()) * 1000, 1),
        "tenant": api_key.tenant_id if api_key is not None else None,
        "key_id": api_key.key_id if api_key is not None else None,
        "client": request_context.client_address(),
    }
    details = " ".join(f"{name}={fields[name]}" for name in ("tenant", "key_id", "client") if fields[name])
    ACCESS.info("%s %s %s %.1f ms %s", fields["method"], fields["path"], fields["status"],
                fields["duration_ms"], details, extra=fields)
    return response
