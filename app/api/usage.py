"""Usage statistics: GET /v1/usage and GET /v1/usage/all."""
import re

from flask import current_app, g
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from ..auth import require_scope
from ..scopes import ALL_READ, USAGE_READ
from . import representations
from .blueprint import Blueprint
from ..records import UtcDateTime
from ..repository import EXACT, PRECISIONS
from ..statistics import Window

blp = Blueprint("usage", __name__, url_prefix="/v1/usage",
                description="Usage statistics of LLM calls, per tenant and for everyone.")

# The 409 of every statistics route (app/retention.py).
PRUNED = ("The answer needs raw calls that `calls prune` deleted (the message names the retention "
          "horizon): ask with `percentiles=approximate` and a window whose ends before the horizon are "
          "UTC midnights, or start the window at or after the horizon.")

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


class BoundsArgs(Schema):
    """The half-open window [`from`, `to`) of a query string."""

    error_messages = {"unknown": "Unknown query parameter."}

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


class WindowArgs(BoundsArgs):
    """The window of statistics, and how their percentiles are computed."""

    percentiles = fields.String(
        load_default=EXACT, validate=validate.OneOf(PRECISIONS),
        metadata={"description": "`exact` (the default): percentiles of the window's records. "
                                 "`approximate`: from rollups, each within 1% of the exact value "
                                 "and between `min` and `max`, at a cost that does not grow with "
                                 "the number of calls; every other number is identical either way."})


class DistributionSchema(Schema):
    avg = fields.Float(required=True)
    min = fields.Integer(required=True)
    max = fields.Integer(required=True)
    p5 = fields.Float(required=True, metadata={"description": "5th percentile, linear interpolation."})
    p50 = fields.Float(required=True, metadata={"description": "Median, linear interpolation."})
    p95 = fields.Float(required=True, metadata={"description": "95th percentile, linear interpolation."})
    p99 = fields.Float(required=True, metadata={"description": "99th percentile, linear interpolation."})


class TokenDistributionSchema(DistributionSchema):
    total = fields.Integer(required=True)


def money(description):
    return fields.Decimal(as_string=False, places=6, required=True,
                          metadata={"description": description + " US dollars, exact to 6 decimals."})


class BreakdownSchema(Schema):
    total_calls = fields.Integer(required=True, metadata={"description": "All records."})
    failed_calls = fields.Integer(required=True, metadata={"description": "Records with status error."})
    cost_usd = money("Sum over ok records.")
    input_tokens_total = fields.Integer(required=True, metadata={"description": "Sum over ok records."})
    output_tokens_total = fields.Integer(required=True, metadata={"description": "Sum over ok records."})


class OperationKeySchema(Schema):
    operation = fields.String(required=True)


class ModelKeySchema(Schema):
    model = fields.String(required=True)


# Fields come in reverse MRO order: the key first, then the numbers.
class OperationStatsSchema(BreakdownSchema, OperationKeySchema):
    pass


class ModelStatsSchema(BreakdownSchema, ModelKeySchema):
    pass


class StatsSchema(Schema):
    """The numbers of a statistics object (a series group holds just these)."""

    total_calls = fields.Integer(required=True, metadata={"description": "All records."})
    failed_calls = fields.Integer(required=True, metadata={"description": "Records with status error."})
    total_cost_usd = money("Sum over ok records.")
    call_duration = fields.Nested(DistributionSchema, required=True,
                                  metadata={"description": "Milliseconds, over ok records."})
    input_tokens = fields.Nested(TokenDistributionSchema, required=True,
                                 metadata={"description": "Over ok records."})
    output_tokens = fields.Nested(TokenDistributionSchema, required=True,
                                  metadata={"description": "Over ok records."})


class TenantKeySchema(Schema):
    tenant_id = fields.String(required=True, allow_none=True,
                              metadata={"description": "null in the grand total."})


# Fields come in reverse MRO order: tenant_id, the numbers, then the breakdowns.
class UsageStatsSchema(StatsSchema, TenantKeySchema):
    by_operation = fields.List(fields.Nested(OperationStatsSchema), required=True,
                               metadata={"description": "Sorted by cost descending, then operation."})
    by_model = fields.List(fields.Nested(ModelStatsSchema), required=True,
                           metadata={"description": "Sorted by cost descending, then model."})


class WindowEchoSchema(Schema):
    from_ = fields.DateTime(data_key="from", format="iso", required=True, allow_none=True,
                            metadata={"description": "The `from` asked for, in UTC, or null."})
    to = fields.DateTime(format="iso", required=True, allow_none=True,
                         metadata={"description": "The `to` asked for, in UTC, or null."})
    percentiles = fields.String(required=True, validate=validate.OneOf(PRECISIONS),
                                metadata={"description": "How the percentiles were computed."})


class TenantUsageSchema(UsageStatsSchema, WindowEchoSchema):
    pass


class AllUsageSchema(WindowEchoSchema):
    tenants = fields.List(fields.Nested(UsageStatsSchema), required=True,
                          metadata={"description": "Tenants with at least one call in the window, by tenant_id."})
    total = fields.Nested(UsageStatsSchema, required=True)


def _window(args):
    return Window(args["from_"], args["to"])


def _json(window, args, stats):
    """The answer, already in the documented shape (statistics.usage_stats), as
    JSON without a schema dump: marshmallow took 10 ms to dump fifty tenants'
    statistics, more than approximate took to compute them from the rollups."""
    moments = {name: moment.isoformat() if moment else None
               for name, moment in (("from", window.start), ("to", window.end))}
    return representations.json_response(blp, {**moments, "percentiles": args["percentiles"], **stats})


def _usage_csv(window, stats_list):
    """One row per statistics object (the grand total has an empty tenant_id)."""
    header = ["from", "to", "tenant_id", *representations.STATS_HEADER]
    rows = [[window.start, window.end, stats["tenant_id"], *representations.stats_cells(stats)]
            for stats in stats_list]
    return header, rows


@blp.route("")
@blp.doc(operationId="getTenantUsage", summary="Usage statistics of the caller's tenant",
         description="Statistics of the key's own tenant over the half-open window "
                     "[`from`, `to`). `total_calls` and `failed_calls` count every record; "
                     "cost (US dollars, exact to 6 decimals), durations (milliseconds) and "
                     "tokens are over `ok` records. `p5`/`p50`/`p95`/`p99` interpolate linearly "
                     "between the closest ranks (PostgreSQL `percentile_cont`, NumPy's default). "
                     "`by_operation` and `by_model` are sorted by cost descending, then name. An "
                     "empty window gives zeros and empty lists. `Accept: text/csv` gives one CSV "
                     "row; an `If-None-Match` with the current ETag gives 304.")
@require_scope(USAGE_READ)
@blp.etag
@blp.arguments(WindowArgs, location="query", as_kwargs=False)
@blp.alt_response(200, success=True, **representations.DOC)
@blp.response(200, TenantUsageSchema, description=representations.DESCRIPTION)
@blp.errors(401, 422, 429, 503, e409=PRUNED)
def tenant_usage(args):
    window = _window(args)
    stats = current_app.extensions["usage_repository"].tenant_usage(
        g.api_key.tenant_id, window, args["percentiles"])
    if representations.wants_csv():
        filename = f"usage_{g.api_key.tenant_id}_{representations.stamp(window.start)}_{representations.stamp(window.end)}.csv"
        return representations.csv_response(blp, *_usage_csv(window, [stats]), filename)
    return _json(window, args, stats)


@blp.route("/all")
@blp.doc(operationId="getAllUsage",
         summary="Usage statistics of every tenant and the grand total",
         description="One statistics object per tenant with at least one call in the "
                     "half-open window [`from`, `to`), sorted by tenant_id, and `total` over "
                     "all of them with `tenant_id: null`. Same rules as `GET /v1/usage`; as "
                     "CSV, one row per tenant and a last row with an empty tenant_id for the total.")
@require_scope(ALL_READ)
@blp.etag
@blp.arguments(WindowArgs, location="query", as_kwargs=False)
@blp.alt_response(200, success=True, **representations.DOC)
@blp.response(200, AllUsageSchema, description=representations.DESCRIPTION)
@blp.errors(401, 422, 429, 503, e403="The key lacks the scope all:read.", e409=PRUNED)
def all_usage(args):
    window = _window(args)
    tenants, total = current_app.extensions["usage_repository"].all_usage(window, args["percentiles"])
    if representations.wants_csv():
        filename = f"usage_all_{representations.stamp(window.start)}_{representations.stamp(window.end)}.csv"
        return representations.csv_response(blp, *_usage_csv(window, [*tenants, total]), filename)
    return _json(window, args, {"tenants": tenants, "total": total})
