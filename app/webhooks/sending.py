"""One delivery attempt: the body, the Standard Webhooks headers, and a POST
that ends by its deadline.

The deadline bounds the whole attempt, not each socket operation: a
receiver that trickles its answer a byte at a time is cut off when the
time is up. That is what lets a worker's lease on a delivery (the attempt's
timeout and a margin) guarantee that no other worker sends it meanwhile.
No redirect is followed: a 3xx is a failed attempt, and nothing is ever
sent to any URL but the endpoint's own.
"""
import datetime as dt
import email.utils
import http.client
import json
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from standardwebhooks import Webhook

USER_AGENT = "usage-service-webhooks"
MAX_ERROR_LENGTH = 255  # webhook_delivery.last_error


@dataclass(frozen=True)
class Answer:
    """What came of a POST: the HTTP status (None if there was none), the
    seconds its Retry-After asked for (None if none or unreadable), and why
    it failed (None for a 2xx)."""

    status: int | None
    retry_after: float | None = None
    error: str | None = None

    @property
    def succeeded(self):
        return self.status is not None and 200 <= self.status < 300


def body(event_type, created_at, data_text):
    """The JSON bytes every attempt of an event sends: type, timestamp (RFC 3339), data."""
    return json.dumps({"type": event_type, "timestamp": created_at.isoformat(),
                       "data": json.loads(data_text)}).encode()


def headers(event_id, secret, payload, now):
    """The headers of one attempt at `now`: `webhook-id` is the event's id on
    every attempt and every endpoint; the timestamp is the attempt's."""
    timestamp = now.replace(microsecond=0)
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": event_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(event_id, timestamp, payload),
    }


def post(url, payload, request_headers, timeout):
    """POST `payload` to `url`, giving up `timeout` seconds from now; an Answer."""
    parts = urlsplit(url)
    kind = _HTTPSConnection if parts.scheme.lower() == "https" else _HTTPConnection
    connection = kind(parts.hostname, parts.port, timeout=timeout)
    connection.deadline = time.monotonic() + timeout
    watchdog = threading.Timer(timeout, _cut, (connection,))
    watchdog.daemon = True
    watchdog.start()
    response = failure = None
    try:
        connection.request("POST", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
                           payload, request_headers)
        response = connection.getresponse()
    except (OSError, http.client.HTTPException) as error:
        failure = error
    finally:
        watchdog.cancel()
        connection.close()
    # After the cut, what was read (an end of file) proves nothing.
    if connection.cut or isinstance(failure, TimeoutError):
        return Answer(None, error=f"no answer within {timeout:g} s (WEBHOOK_TIMEOUT)")
    if failure is not None:
        return Answer(None, error=_trimmed(f"{type(failure).__name__}: {failure}"))
    if 200 <= response.status < 300:
        return Answer(response.status)
    return Answer(response.status, retry_after_seconds(response.getheader("Retry-After")),
                  _trimmed(f"HTTP {response.status} {response.reason}"))


def _trimmed(error):
    return error[:MAX_ERROR_LENGTH]


class _BeforeDeadline:
    """Connects within what is left of the deadline, and not at all past it:
    name resolution has no timeout of its own, and a request sent after the
    deadline could overlap another worker's attempt."""

    deadline: float
    cut = False  # set by the watchdog when the deadline passed

    def connect(self):
        self.timeout = max(0.001, self.deadline - time.monotonic())
        super().connect()
        if time.monotonic() >= self.deadline:
            raise TimeoutError("connected past the deadline")


class _HTTPConnection(_BeforeDeadline, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_BeforeDeadline, http.client.HTTPSConnection):
    pass


def _cut(connection):
    """Shut the socket down: a thread blocked reading it returns at once."""
    connection.cut = True
    sock = connection.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def retry_after_seconds(value, now=None):
    """Retry-After as seconds: a whole number of them, or an HTTP date; None if neither."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:  # RFC 9110 dates are GMT
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (moment - (now or dt.datetime.now(dt.timezone.utc))).total_seconds())
