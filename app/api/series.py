"""Usage over time: GET /v1/usage/series and GET /v1/usage/all/series.

Buckets follow the calendar of an IANA zone (`app/buckets.py` says what a
bucket is); each group's numbers are what `/v1/usage` answers for the
bucket's [start, end) restricted to the group (`app/statistics.py`).
"""
import datetime as dt

from flask import current_app, g
from marshmallow import Schema, ValidationError, fields, post_load, validate
from webargs.fields import DelimitedList

from .. import buckets
from ..accounts import TENANT_ID_PATTERN
from ..auth import require_scope
from ..records import OPERATION_PATTERN, Text, WholeMatch
from ..scopes import ALL_READ, USAGE_READ
from ..statistics import DIMENSIONS
from . import representations
from .blueprint import Blueprint
from .usage import PRUNED, StatsSchema, WindowArgs, WindowEchoSchema

blp = Blueprint("series", __name__, url_prefix="/v1/usage",
                description="Usage over time: buckets in any IANA time zone, grouped by any dimension.")

DEFAULT_SPAN = dt.timedelta(days=30)


def _now_to_the_minute():
    """`to` when omitted: now, rounded up to the minute, so that a dashboard
    polling within the same minute gets the same answer (and a 304)."""
    now = dt.datetime.now(dt.timezone.utc)
    return now.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)


def _unique(values):
    if len(set(values)) != len(values):
        raise ValidationError("A dimension may be named only once.")


class FilterArgs(Schema):
    """Which calls a series or the call log reads (app/api/calls_log.py)."""

    operation = fields.List(fields.String(validate=WholeMatch(OPERATION_PATTERN)), load_default=list,
                            metadata={"description": "Only these operations (repeat for any of several)."})
    model = fields.List(Text(validate=validate.Length(1, 255)), load_default=list,
                        metadata={"description": "Only these models (repeat for any of several)."})
    status = fields.List(fields.String(validate=validate.OneOf(["ok", "error"])), load_default=list,
                         metadata={"description": "Only records with this status."})


class TenantFilterArgs(Schema):
    tenant_id = fields.List(fields.String(validate=WholeMatch(TENANT_ID_PATTERN)), load_default=list,
                            metadata={"description": "Only these tenants (repeat for any of several)."})


# Fields come in reverse MRO order: the window, the filters, then the buckets.
class SeriesArgs(FilterArgs, WindowArgs):
    bucket = fields.String(load_default="day", validate=validate.OneOf(buckets.UNITS),
                           metadata={"description": "Bucket size, on the calendar of `tz`."})
    tz = fields.String(load_default="UTC", metadata={
        "description": "IANA time zone of the buckets, e.g. `Europe/Berlin`.", "example": "Europe/Berlin"})

    @post_load
    def with_buckets(self, data, **kwargs):
        """The zone, the defaults of the window (the 30 days up to now) and its buckets."""
        try:
            data["zone"] = buckets.zone(data["tz"])
        except ValueError as error:
            raise ValidationError(str(error), "tz") from None
        data["to"] = data["to"] or _now_to_the_minute()
        try:
            data["from_"] = data["from_"] or data["to"] - DEFAULT_SPAN
        except OverflowError:
            raise ValidationError("Required when 'to' is within 30 days of 0001-01-01.", "from") from None
        if data["to"] <= data["from_"]:
            raise ValidationError("Must be later than 'from' (which defaults to 30 days before 'to').", "to")
        try:
            data["buckets"] = buckets.buckets(data["from_"], data["to"], data["bucket"], data["zone"])
        except buckets.TooManyBuckets as error:
            raise ValidationError(str(error), "bucket") from None
        except buckets.BeyondCalendar as error:
            raise ValidationError(str(error), "from" if error.bound == "start" else "to") from None
        return data


def _group_by(dimensions):
    return DelimitedList(
        fields.String(validate=validate.OneOf(dimensions)), load_default=list, validate=_unique,
        metadata={"description": "Comma-separated dimensions to group each bucket by, any of: "
                                 + ", ".join(f"`{d}`" for d in dimensions) + "."})


class TenantSeriesArgs(SeriesArgs):
    group_by = _group_by(DIMENSIONS)


class AllSeriesArgs(TenantFilterArgs, SeriesArgs):
    group_by = _group_by(("tenant_id", *DIMENSIONS))


class GroupKeysSchema(Schema):
    tenant_id = fields.String()
    operation = fields.String()
    model = fields.String()
    status = fields.String()
    error_class = fields.String(allow_none=True, metadata={"description": "null for ok records."})


class SeriesGroupSchema(StatsSchema, GroupKeysSchema):
    """The group's key fields (those of `group_by`) first, then its numbers."""


class BucketSchema(Schema):
    start = fields.String(required=True, metadata={"description": "RFC 3339, with the offset of `tz`."})
    end = fields.String(required=True, metadata={"description": "RFC 3339, with the offset of `tz`."})
    groups = fields.List(fields.Nested(SeriesGroupSchema), required=True, metadata={
        "description": "Without group_by, exactly one group (zeros when empty); with it, the "
                       "groups that have records, sorted by their key values (null first)."})


class SeriesSchema(WindowEchoSchema):
    bucket = fields.String(required=True)
    tz = fields.String(required=True)
    group_by = fields.List(fields.String(), required=True)
    buckets = fields.List(fields.Nested(BucketSchema), required=True)


SERIES_RULES = (
    "Every bucket of the half-open window [`from`, `to`) is listed, empty ones included; the first "
    "and last are clipped to the window. Days start at local midnight (23 or 25 hours on DST "
    "days), weeks on Monday, months on the 1st; hours are real hours (a repeated hour gives two "
    "buckets). `from`/`to` default to the 30 days up to now (rounded up to the minute); more than "
    "10,000 buckets is a 422, as are buckets reaching before 0001-01-01 or after 9999-12-31 in "
    "`tz`. A group's numbers are what `GET /v1/usage` answers for the bucket's "
    "[start, end) restricted to the group. Filters (`operation`, `model`, `status`) may be repeated "
    "to mean any of them. `Accept: text/csv` gives one row per bucket and group.")


def _series(args, tenant_ids, scope):
    zone, group_by = args["zone"], args["group_by"]
    filters = {d: args[d] for d in ("tenant_id", "operation", "model", "status") if args.get(d)}
    if tenant_ids is not None:
        filters["tenant_id"] = tenant_ids
    series = current_app.extensions["usage_repository"].series(
        args["buckets"], group_by, filters, args["percentiles"])
    # The buckets tile the window: each edge is one bucket's end and the next one's start.
    bucket_list = args["buckets"]
    edges = [b.start.astimezone(zone).isoformat() for b in bucket_list]
    edges.append(bucket_list[-1].end.astimezone(zone).isoformat())
    rendered = [{"start": start, "end": end, "groups": groups}
                for start, end, groups in zip(edges, edges[1:], series)]
    if representations.wants_csv():
        return _series_csv(args, rendered, scope)
    return representations.json_response(blp, {
        "from": args["from_"].isoformat(), "to": args["to"].isoformat(),
        "percentiles": args["percentiles"], "bucket": args["bucket"],
        "tz": args["tz"], "group_by": group_by, "buckets": rendered})


def _series_csv(args, rendered, scope):
    group_by = args["group_by"]
    header = ["bucket_start", "bucket_end", *group_by, *representations.STATS_HEADER]
    rows = [[bucket["start"], bucket["end"], *(group[d] for d in group_by), *representations.stats_cells(group)]
            for bucket in rendered for group in bucket["groups"]]
    # The grouping is in the name: downloads grouped by operation and by model differ.
    grouping = "".join(f"_by-{dimension}" for dimension in group_by)
    filename = (f"usage-series_{scope}_{args['bucket']}{grouping}_{representations.stamp(args['from_'])}_"
                f"{representations.stamp(args['to'])}.csv")
    return representations.csv_response(blp, header, rows, filename)


@blp.route("/series")
@blp.doc(operationId="getTenantUsageSeries", summary="Usage over time of the caller's tenant",
         description="The key's own tenant, bucketed by `bucket` on the calendar of `tz` and "
                     "grouped by `group_by`. " + SERIES_RULES)
@require_scope(USAGE_READ)
@blp.etag
@blp.arguments(TenantSeriesArgs, location="query", as_kwargs=False)
@blp.alt_response(200, success=True, **representations.DOC)
@blp.response(200, SeriesSchema, description=representations.DESCRIPTION)
@blp.errors(401, 422, 429, 503, e409=PRUNED)
def tenant_series(args):
    return _series(args, [g.api_key.tenant_id], g.api_key.tenant_id)


@blp.route("/all/series")
@blp.doc(operationId="getAllUsageSeries", summary="Usage over time of every tenant",
         description="Every tenant together, or those of `tenant_id`; `tenant_id` is also a "
                     "`group_by` dimension. " + SERIES_RULES)
@require_scope(ALL_READ)
@blp.etag
@blp.arguments(AllSeriesArgs, location="query", as_kwargs=False)
@blp.alt_response(200, success=True, **representations.DOC)
@blp.response(200, SeriesSchema, description=representations.DESCRIPTION)
@blp.errors(401, 422, 429, 503, e403="The key lacks the scope all:read.", e409=PRUNED)
def all_series(args):
    return _series(args, None, "all")
