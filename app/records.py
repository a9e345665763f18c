"""One LLM call record: its validation schema and its mapping to an llm_call row.

Shared by `flask calls import` and `POST /v1/usage/calls`, so a record is
accepted or refused for the same reasons by both.
"""
import datetime as dt
import json
from decimal import Decimal

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from .accounts import TENANT_ID_PATTERN
from .models import usd_to_micros

MAX_INT = 2**31 - 1
# Bounds money so sums of millions of records fit a 64-bit integer of micro-dollars.
MAX_COST_USD = Decimal(1_000_000)


def parse_json(text):
    """JSON with every non-integer number read as an exact Decimal."""
    return json.loads(text, parse_float=Decimal)


def at_most_six_places(value):
    if value.normalize().as_tuple().exponent < -6:
        raise ValidationError("At most 6 decimal places are allowed (values are never rounded).")


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
        return super()._validated(value)


class CallRecordSchema(Schema):
    class Meta:
        unknown = RAISE

    tenant_id = fields.String(
        validate=validate.Regexp(TENANT_ID_PATTERN),
        metadata={"description": "Tenant slug. Optional with a tenant key (defaults to the key's tenant)."},
    )
    call_id = fields.UUID(required=True, metadata={"description": "Unique per tenant; a repeat is a duplicate."})
    operation = fields.String(
        required=True,
        validate=validate.Regexp(r"^[a-z][a-z0-9_]{0,63}$"),
        metadata={"example": "summarize"},
    )
    timestamp = UtcDateTime(
        required=True,
        metadata={"description": "ISO 8601 with an explicit offset; stored in UTC.",
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
