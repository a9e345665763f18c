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

A text line is one line whatever a client sent: control characters (C0,
DEL, C1), Unicode format characters such as the bidi overrides (U+202E) and
line or paragraph separators are written escaped (`\n`, `\x1b`, `\u202e`),
so a path with `%0A` cannot start a forged line, and ESC or RTL characters
cannot rewrite what a terminal shows. A traceback keeps its line breaks and
is escaped otherwise. JSON lines need nothing more: JSON escapes them.

The handler sits on the root logger and writes to standard error, where
gunicorn writes its own log (gunicorn.conf.py gives gunicorn's lines the
same format). The service's loggers (`app`, `usage.access`) log at INFO;
everything else keeps Python's default, WARNING.
"""
import datetime as dt
import json
import logging
import re
import sys
import time
import unicodedata

from flask import g, request

from . import request_context
from .db.handle import ConfigurationError

FORMATS = ("text", "json")
ACCESS = logging.getLogger("usage.access")
SERVICE_LOGGERS = ("app", "usage.access")
TEXT_FORMAT = "%(asctime)s [%(process)d] %(levelname)s [%(request_id_or_dash)s] %(name)s: %(message)s"
# Fields a request's line carries, in this order (text shows them as name=value).
REQUEST_FIELDS = ("method", "path", "route", "status", "duration_ms", "tenant", "key_id", "client")
# Controls (Cc), format characters (Cf: bidi, zero-width), line and paragraph separators.
UNPRINTABLE_CATEGORIES = frozenset(("Cc", "Cf", "Zl", "Zp"))
NOT_PRINTABLE_ASCII = re.compile(r"[^\x20-\x7e]")  # candidates only: most are printable text
NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


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

    def formatMessage(self, record):
        return escape_unprintable(super().formatMessage(record))

    # Tracebacks span lines by design: each of their lines is escaped.
    def formatException(self, exc_info):
        return _escape_each_line(super().formatException(exc_info))

    def formatStack(self, stack_info):
        return _escape_each_line(stack_info)


def escape_unprintable(text):
    """`text` with every control, format or separator character written as an escape."""
    return NOT_PRINTABLE_ASCII.sub(_escape, text)


def _escape_each_line(text):
    return "\n".join(escape_unprintable(line) for line in text.split("\n"))


def _escape(match):
    char = match.group()
    if unicodedata.category(char) not in UNPRINTABLE_CATEGORIES:
        return char
    if char in NAMED_ESCAPES:
        return NAMED_ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


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
