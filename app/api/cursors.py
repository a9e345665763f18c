"""The call log's cursors: opaque to clients, checked strictly when they come back.

A cursor says where a page ended (the last call's timestamp and id), the
high-water id of the listing (`repository.calls_log`), and a digest of the
query it belongs to (route, tenant, window and filters), so that it cannot
continue another query's listing. It is the URL-safe base64 (unpadded) of
the JSON array

    [1, "2026-11-01T12:00:00.000000", 4711, 5000, "<query digest>", "<signature>"]

version, timestamp (naive UTC), id, high-water id, digest, and an
HMAC-SHA256 over the rest: keyed with the app's SECRET_KEY when it has one,
else with a fixed key, when it only tells damaged or hand-edited cursors
from good ones. Either way a forged cursor can do no harm: the query, not
the cursor, says which calls may be read (the key's own tenant, the
filters), and a cursor is refused unless the query's digest matches.
"""
import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import re

from flask import current_app

from ..repository.calls_log import Position

VERSION = 1
MAX_LENGTH = 512  # characters of a cursor: a real one has about 200
UNKEYED = b"usage-service call-log cursor"
_MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}")
_DIGEST = re.compile(r"[0-9a-f]{32}")
_TEXT = re.compile(r"[A-Za-z0-9_-]+")


class InvalidCursor(ValueError):
    """`str()` says what to do instead."""


MALFORMED = InvalidCursor("Not a cursor of this listing: pass back `next_cursor` exactly as the "
                          "previous page gave it, or leave `cursor` out to start from the newest call.")
OTHER_QUERY = InvalidCursor("This cursor belongs to a listing with another window, other filters or "
                            "another tenant: send the same query as the page that gave it, or leave "
                            "`cursor` out to start again.")


def query_digest(scope, query):
    """The digest of a listing's query: `scope` (the route and whose calls)
    and {parameter: value or list}, lists as sets."""
    canonical = {name: sorted(set(value)) if isinstance(value, list) else value
                 for name, value in query.items()}
    text = json.dumps([scope, canonical], sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def encode(position, high_water_id, digest):
    moment = position.timestamp.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")
    fields = [VERSION, moment, position.id, high_water_id, digest]
    payload = json.dumps([*fields, _signature(fields)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode()


def decode(text, digest):
    """(Position, high-water id) of a cursor made for the query of `digest`;
    InvalidCursor (MALFORMED or OTHER_QUERY) otherwise."""
    if not (0 < len(text) <= MAX_LENGTH and _TEXT.fullmatch(text)):
        raise MALFORMED
    try:
        fields = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError):
        raise MALFORMED from None
    if not (isinstance(fields, list) and len(fields) == 6 and fields[0] == VERSION
            and isinstance(fields[5], str) and hmac.compare_digest(fields[5], _signature(fields[:5]))):
        raise MALFORMED
    _, moment, call_id, high_water_id, made_for, _ = fields
    if not (isinstance(moment, str) and _MOMENT.fullmatch(moment) and _natural(call_id)
            and _natural(high_water_id) and call_id <= high_water_id
            and isinstance(made_for, str) and _DIGEST.fullmatch(made_for)):
        raise MALFORMED
    if not hmac.compare_digest(made_for, digest):
        raise OTHER_QUERY
    try:
        timestamp = dt.datetime.strptime(moment, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise MALFORMED from None
    return Position(timestamp, call_id), high_water_id


def _natural(value):
    return type(value) is int and 0 < value < 2**63


def _signature(fields):
    secret = current_app.config.get("SECRET_KEY") or UNKEYED
    key = secret.encode() if isinstance(secret, str) else secret
    message = json.dumps(fields, separators=(",", ":")).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]
