"""One LLM call record: its validation schema and its mapping to an llm_call row.

Shared by `flask calls import` and `POST /v1/usage/calls`, so a record is
accepted or refused for the same reasons by both.
"""
import datetime as dt
import json
import re
import uuid
from decimal import Decimal

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from .accounts import TENANT_ID_PATTERN
from .models import usd_to_micros

MAX_INT = 2**31 - 1
OPERATION_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
# Bounds money so sums of millions of records fit a 64-bit integer of micro-dollars.
MAX_COST_USD = Decimal(1_000_000)


# Python refuses to turn longer digit strings into an int (sys.int_info).
INT_DIGITS_LIMIT = 4300


class InvalidJSON(ValueError):
    """Text that is not JSON the service can read; `str()` says why, without positions
    that could contradict the caller's own line numbers."""


def _parse_int(digits):
    # Past Python's limit an integer stays a Decimal, which integer fields then
    # refuse by name ("input_tokens: ...") instead of failing the whole body.
    return int(digits) if len(digits) <= INT_DIGITS_LIMIT else Decimal(digits)


def parse_json(text):
    """JSON with every non-integer number read as an exact Decimal.

    Raises InvalidJSON for malformed or absurdly nested text (Python's parser
    recurses once per level of nesting).
    """
    try:
        try:
            # Integers by the scanner's own C path: a parse_int hook costs a
            # Python call per integer (3,000 in a batch of 1000 records).
            return json.loads(text, parse_float=Decimal)
        except ValueError as error:
            if isinstance(error, json.JSONDecodeError):
                raise
            # An integer past Python's digit limit: read again, keeping it a Decimal.
            return json.loads(text, parse_float=Decimal, parse_int=_parse_int)
    except RecursionError:
        raise InvalidJSON("nested too deeply") from None
    except json.JSONDecodeError as error:
        raise InvalidJSON(f"{error.msg} at column {error.colno}") from None
    except UnicodeDecodeError as error:
        raise InvalidJSON(f"not UTF-8 ({error.reason})") from None


def at_most_six_places(value):
    """Refuse a seventh decimal place; trailing zeros do not count ("0.30000000").

    Reads the digits directly: Decimal arithmetic (normalize, quantize) would
    overflow or round on exponents such as 1e-999999999.
    """
    _, digits, exponent = value.as_tuple()
    significant = "".join(map(str, digits)).rstrip("0")
    if significant and exponent + (len(digits) - len(significant)) < -6:
        raise ValidationError("At most 6 decimal places are allowed (values are never rounded).")


class WholeMatch(validate.Regexp):
    """`validate.Regexp` on the whole string: `re.match` with `$` would let a
    trailing newline through ("analyze\n"). The pattern keeps its `^...$`
    form for the OpenAPI document, where `$` means the end."""

    def __call__(self, value):
        if not isinstance(value, str) or self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


class Text(fields.String):
    """Free text that both databases can store: valid Unicode without NUL characters."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError("Not valid Unicode text.") from None
        if "\x00" in text:
            raise ValidationError("NUL characters are not allowed.")
        return text


class UtcDateTime(fields.AwareDateTime):
    """An ISO 8601 datetime with an explicit offset, returned in UTC."""

    default_error_messages = {
        "invalid": "Not a valid datetime: use ISO 8601 with a timezone, e.g. 2026-11-01T00:00:00Z "
                   "or 2026-11-01T00:00:00+02:00.",
        "invalid_awareness": "This datetime needs a timezone: Z or +02:00 "
                             "(e.g. 2026-11-01T00:00:00Z).",
    }

    def __init__(self, **kwargs):
        super().__init__(format="iso", **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            return moment.astimezone(dt.timezone.utc)
        except OverflowError:
            raise ValidationError("Out of range once converted to UTC.") from None


class StrictInteger(fields.Integer):
    """An integer given as a JSON integer: not a string, float or boolean."""

    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)

    def _validated(self, value):
        if isinstance(value, bool):
            raise self.make_error("invalid")
        if isinstance(value, Decimal) and value == value.to_integral_value():
            raise ValidationError("Out of range (a huge integer).")
        return super()._validated(value)


class CallRecordSchema(Schema):
    class Meta:
        unknown = RAISE

    tenant_id = fields.String(
        validate=WholeMatch(TENANT_ID_PATTERN),
        metadata={"description": "Tenant slug. Optional with a tenant key (defaults to the key's tenant)."},
    )
    call_id = fields.UUID(required=True, metadata={"description": "Unique per tenant; a repeat is a duplicate."})
    operation = fields.String(
        required=True,
        validate=WholeMatch(OPERATION_PATTERN),
        metadata={"example": "summarize"},
    )
    timestamp = UtcDateTime(
        required=True,
        metadata={"description": "ISO 8601 with an explicit offset; stored in UTC. Refused outside "
                                 "the accepted range: by default from 2000-01-01 to a day past the "
                                 "server's clock (CALLS_ACCEPTED_FROM, CALLS_ACCEPTED_AHEAD).",
                  "example": "2026-11-01T12:00:00Z"},
    )
    call_duration_ms = StrictInteger(
        required=True, validate=validate.Range(0, MAX_INT),
        metadata={"description": "Wall-clock duration of the call in milliseconds.", "example": 1840})
    model = Text(required=True, validate=validate.Length(1, 255), metadata={"example": "gpt-4o-mini"})
    input_tokens = StrictInteger(
        required=True, validate=validate.Range(0, MAX_INT),
        metadata={"description": "Prompt tokens billed.", "example": 2100})
    output_tokens = StrictInteger(
        required=True, validate=validate.Range(0, MAX_INT),
        metadata={"description": "Completion tokens billed.", "example": 310})
    cost_usd = fields.Decimal(
        required=True,
        allow_nan=False,
        validate=[validate.Range(0, MAX_COST_USD), at_most_six_places],
        metadata={"description": "US dollars, a number or decimal string, at most 6 decimal places.",
                  "example": "0.001234"},
    )
    status = fields.String(required=True, validate=validate.OneOf(["ok", "error"]),
                           metadata={"description": "`error`: the attempt failed (counted, not costed)."})
    error_class = Text(
        allow_none=True,
        validate=validate.Length(1, 255),
        metadata={"description": "Required when status is error; absent (or null) when ok."},
    )

    @validates_schema
    def error_class_matches_status(self, data, **kwargs):
        error_class = data.get("error_class")
        if data.get("status") == "error" and not error_class:
            raise ValidationError("Required when status is 'error'.", "error_class")
        if data.get("status") == "ok" and error_class is not None:
            raise ValidationError("Must be absent when status is 'ok'.", "error_class")

    def load(self, data, *, many=None, partial=None, unknown=None):
        """`plainly_valid` first: a batch of 1000 records takes marshmallow
        some 85 ms, about what PostgreSQL takes to store it (issue 10). A
        record it does not vouch for, invalid or merely unusual, is loaded by
        marshmallow, which has the last word and writes every error message.
        `partial` and `unknown` cannot change the answer for a record that
        has every field and no other."""
        if not (many or self.many or self.only or self.exclude):
            record = plainly_valid(data)
            if record is not None:
                return record
        return super().load(data, many=many, partial=partial, unknown=unknown)


# What CallRecordSchema checks, restated for plainly_valid: keep the two together.
_FIELD_NAMES = frozenset(CallRecordSchema._declared_fields)
_REQUIRED_NAMES = frozenset(name for name, field in CallRecordSchema._declared_fields.items()
                            if field.required)
_COUNTS = ("call_duration_ms", "input_tokens", "output_tokens")
_TENANT_ID = re.compile(TENANT_ID_PATTERN)
_OPERATION = re.compile(OPERATION_PATTERN)
_ABSENT = object()


def _storable_text(value):
    """What `Text` and `validate.Length(1, 255)` accept."""
    if type(value) is not str or not 0 < len(value) <= 255 or "\x00" in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def plainly_valid(raw):
    """The record `CallRecordSchema` loads from `raw`, computed directly (some
    10 times faster), or None when `raw` is anything but plainly valid: a
    value of an unexpected type, an invalid value, a missing or unknown key.

    None sends `raw` to marshmallow, so this may refuse more than the schema
    but must never accept more, nor answer differently
    (tests/test_record_fast_path.py compares the two on hostile values).
    """
    if type(raw) is not dict or not _REQUIRED_NAMES <= raw.keys() <= _FIELD_NAMES:
        return None
    tenant_id = raw.get("tenant_id", _ABSENT)
    if tenant_id is not _ABSENT and not (type(tenant_id) is str and _TENANT_ID.fullmatch(tenant_id)):
        return None
    operation = raw["operation"]
    if not (type(operation) is str and _OPERATION.fullmatch(operation)):
        return None
    for name in _COUNTS:
        count = raw[name]  # bool and Decimal are refused by type
        if type(count) is not int or not 0 <= count <= MAX_INT:
            return None
    if not _storable_text(raw["model"]):
        return None
    status, error_class = raw["status"], raw.get("error_class")
    if status == "ok":
        if error_class is not None:
            return None
    elif status != "error" or not _storable_text(error_class):
        return None
    call_id, timestamp, cost = raw["call_id"], raw["timestamp"], raw["cost_usd"]
    if type(call_id) is not str or type(timestamp) is not str or type(cost) not in (str, int, Decimal):
        return None
    try:
        call_id = uuid.UUID(call_id)  # as fields.UUID
        moment = dt.datetime.fromisoformat(timestamp)  # as fields.AwareDateTime(format="iso")
        if moment.tzinfo is None or moment.utcoffset() is None:
            return None
        moment = moment.astimezone(dt.timezone.utc)
        cost = Decimal(str(cost))  # as fields.Decimal
        if not cost.is_finite() or not 0 <= cost <= MAX_COST_USD:
            return None
        if cost.as_tuple().exponent < -6:  # else plainly at most 6 places
            at_most_six_places(cost)
    except (ValueError, TypeError, OverflowError, ArithmeticError, ValidationError):
        return None
    return {**raw, "call_id": call_id, "timestamp": moment, "cost_usd": cost}


class CallRecords(fields.List):
    """A list of call records: `fields.List(fields.Nested(CallRecordSchema))`
    that takes a list of plainly valid records (`plainly_valid`) as it is,
    without marshmallow's per-item field machinery (about 2.5 ms of a
    1000-record batch); any other list is loaded item by item, with every
    error message, by that machinery."""

    def __init__(self, **kwargs):
        super().__init__(fields.Nested(CallRecordSchema), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if type(value) is list:
            records = [plainly_valid(raw) for raw in value]
            if None not in records:
                return records
        return super()._deserialize(value, attr, data, **kwargs)


def to_row(record, tenant_id):
    """The llm_call row of a validated record, for `tenant_id`."""
    return {
        "call_id": record["call_id"],
        "tenant": tenant_id,
        "operation": record["operation"],
        "timestamp": record["timestamp"],
        "call_duration_ms": record["call_duration_ms"],
        "model": record["model"],
        "input_tokens": record["input_tokens"],
        "output_tokens": record["output_tokens"],
        "cost_micro_usd": usd_to_micros(record["cost_usd"]),
        "status": record["status"],
        "error_class": record.get("error_class"),
    }
