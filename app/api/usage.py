"""Usage statistics: GET /v1/usage and GET /v1/usage/all."""
import re

from flask import current_app, g
from marshmallow import Schema, ValidationError, fields, validates_schema

from ..auth import require_api_key, require_superuser
from .blueprint import Blueprint
from ..records import UtcDateTime
from ..statistics import Window

blp = Blueprint("usage", __name__, url_prefix="/v1/usage",
                description="Usage statistics of LLM calls, per tenant and for everyone.")

WINDOW_RULE = (
    "ISO 8601 with an explicit timezone (`Z` or `+hh:mm`; an unescaped `+` that arrives as a "
    "space is read as `+`); naive values are refused. "
    "The window is half-open: `from` inclusive, `to` exclusive; `to` must be after `from`. "
    "Leave a bound out for an open window."
)


class QueryDateTime(UtcDateTime):
    """A window bound in a query string. An offset pasted into a URL unescaped
    (`…T00:00:00+02:00`) arrives with its `+` decoded to a space; read it back."""

    SPACED_OFFSET = re.compile(r"(T[0-9:.]+) ([0-9]{2}:?[0-9]{2})$")

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            value = self.SPACED_OFFSET.sub(r"\1+\2", value)
        return super()._deserialize(value, attr, data, **kwargs)


class WindowArgs(Schema):
    from_ = QueryDateTime(
        data_key="from", load_default=None,
        metadata={"description": "Inclusive lower bound. " + WINDOW_RULE, "example": "2026-11-01T00:00:00Z"},
    )
    to = QueryDateTime(
        load_default=None,
        metadata={"description": "Exclusive upper bound. " + WINDOW_RULE, "example": "2026-12-01T00:00:00Z"},
    )

    @validates_schema
    def to_after_from(self, data, **kwargs):
        if data["from_"] and data["to"] and data["to"] <= data["from_"]:
            raise ValidationError("Must be later than 'from'.", "to")


class DistributionSchema(Schema):
    avg = fields.Float(required=True)
    min = fields.Integer(required=True)
    max = fields.Integer(required=True)
    p5 = fields.Float(required=True, metadata={"description": "5th percentile, linear interpolation."})
    p95 = fields.Float(required=True, metadata={"description": "95th percentile, linear interpolation."})


class TokenDistributionSchema(DistributionSchema):
    total = fields.Integer(required=True)


def money(description):
    return fields.Decimal(as_string=False, places=6, required=True,
                          metadata={"description": description + " US dollars, exact to 6 decimals."})


class OperationStatsSchema(Schema):
    operation = fields.String(required=True)
    total_calls = fields.Integer(required=True, metadata={"description": "All records."})
    failed_calls = fields.Integer(required=True, metadata={"description": "Records with status error."})
    cost_usd = money("Sum over ok records.")
    input_tokens_total = fields.Integer(required=True, metadata={"description": "Sum over ok records."})
    output_tokens_total = fields.Integer(required=True, metadata={"description": "Sum over ok records."})


class UsageStatsSchema(Schema):
    tenant_id = fields.String(required=True, allow_none=True,
                              metadata={"description": "null in the grand total."})
    total_calls = fields.Integer(required=True, metadata={"description": "All records in the window."})
    failed_calls = fields.Integer(required=True, metadata={"description": "Records with status error."})
    total_cost_usd = money("Sum over ok records.")
    call_duration = fields.Nested(DistributionSchema, required=True,
                                  metadata={"description": "Milliseconds, over ok records."})
    input_tokens = fields.Nested(TokenDistributionSchema, required=True,
                                 metadata={"description": "Over ok records."})
    output_tokens = fields.Nested(TokenDistributionSchema, required=True,
                                  metadata={"description": "Over ok records."})
    by_operation = fields.List(fields.Nested(OperationStatsSchema), required=True,
                               metadata={"description": "Sorted by cost descending, then operation."})


class WindowEchoSchema(Schema):
    from_ = fields.DateTime(data_key="from", format="iso", required=True, allow_none=True,
                            metadata={"description": "The `from` asked for, in UTC, or null."})
    to = fields.DateTime(format="iso", required=True, allow_none=True,
                         metadata={"description": "The `to` asked for, in UTC, or null."})


class TenantUsageSchema(UsageStatsSchema, WindowEchoSchema):
    pass


class AllUsageSchema(WindowEchoSchema):
    tenants = fields.List(fields.Nested(UsageStatsSchema), required=True,
                          metadata={"description": "Tenants with at least one call in the window, by tenant_id."})
    total = fields.Nested(UsageStatsSchema, required=True)


def _window(args):
    return Window(args["from_"], args["to"])


def _echo(window):
    return {"from_": window.start, "to": window.end}


@blp.route("")
@blp.doc(summary="Usage statistics of the caller's tenant",
         description="Statistics of the key's own tenant over the half-open window "
                     "[`from`, `to`). `total_calls` and `failed_calls` count every record; "
                     "cost (US dollars, exact to 6 decimals), durations (milliseconds) and "
                     "tokens are over `ok` records. `p5`/`p95` interpolate linearly between "
                     "the closest ranks (PostgreSQL `percentile_cont`, NumPy's default). "
                     "`by_operation` is sorted by cost descending, then operation. An empty "
                     "window gives zeros and `by_operation: []`.")
@require_api_key
@blp.arguments(WindowArgs, location="query", as_kwargs=False)
@blp.response(200, TenantUsageSchema)
@blp.errors(401, 422, 503)
def tenant_usage(args):
    window = _window(args)
    stats = current_app.extensions["usage_repository"].tenant_usage(g.api_key.tenant_id, window)
    return {**_echo(window), **stats}


@blp.route("/all")
@blp.doc(summary="Usage statistics of every tenant and the grand total (superuser)",
         description="One statistics object per tenant with at least one call in the "
                     "half-open window [`from`, `to`), sorted by tenant_id, and `total` over "
                     "all of them with `tenant_id: null`. Same rules as `GET /v1/usage`.")
@require_superuser
@blp.arguments(WindowArgs, location="query", as_kwargs=False)
@blp.response(200, AllUsageSchema)
@blp.errors(401, 422, 503, e403="The key is not a superuser key.")
def all_usage(args):
    window = _window(args)
    tenants, total = current_app.extensions["usage_repository"].all_usage(window)
    return {**_echo(window), "tenants": tenants, "total": total}
