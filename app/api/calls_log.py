"""The call log: GET /v1/usage/calls and GET /v1/usage/all/calls.

The stored calls themselves, newest first: as JSON a page at a time
(`limit`, `cursor`, `next_cursor`), or with `Accept: application/x-ndjson`
or `text/csv` every matching call in one streamed answer (an export). Each
call has the fields `POST /v1/usage/calls` takes, so an NDJSON export is a
file `flask calls import` reads back. The SQL is `repository.calls_log`'s,
the cursors `cursors`'. After `calls prune`, a window reaching into the
pruned calls is a 409 and an open `from` starts at the horizon: the rule and
why are app/retention.py's (`log_start`).
"""
import csv
import io

from flask import Response, current_app, g, request, stream_with_context
from flask_smorest import abort
from marshmallow import Schema, fields, validate

from .. import jsonio, liveness
from ..auth import require_scope
from ..records import Text
from ..repository import calls_log
from ..repository.calls_log import Position
from ..scopes import ALL_READ, USAGE_READ
from ..statistics import Window
from . import cursors, representations
from .blueprint import Blueprint
from .series import FilterArgs, TenantFilterArgs
from .usage import BoundsArgs

blp = Blueprint("calls_log", __name__, url_prefix="/v1/usage",
                description="The call log: stored calls, newest first, by page or as an export.")

NDJSON = "application/x-ndjson"
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
# A call's fields, in the order of every representation (those POST /v1/usage/calls takes).
FIELDS = ("tenant_id", "call_id", "timestamp", "operation", "model", "call_duration_ms", "input_tokens",
          "output_tokens", "cost_usd", "status", "error_class")


class CallLogArgs(FilterArgs, BoundsArgs):
    error_class = fields.List(Text(validate=validate.Length(1, 255)), load_default=list,
                              metadata={"description": "Only calls that failed with these error classes "
                                                       "(repeat for any of several)."})
    limit = fields.Integer(load_default=DEFAULT_LIMIT, validate=validate.Range(1, MAX_LIMIT), metadata={
        "description": f"Calls per page, 1 to {MAX_LIMIT}. Not with an export, which has every call."})
    cursor = fields.String(metadata={
        "description": "`next_cursor` of the previous page, to read the next one; with the same "
                       "window and filters (else 422). Not with an export."})


class AllCallLogArgs(TenantFilterArgs, CallLogArgs):
    pass


class LoggedCallSchema(Schema):
    tenant_id = fields.String(required=True)
    call_id = fields.UUID(required=True)
    timestamp = fields.String(required=True, metadata={
        "description": "RFC 3339 in UTC with `Z`, to the microsecond when it has one.",
        "example": "2026-11-01T12:00:00Z"})
    operation = fields.String(required=True)
    model = fields.String(required=True)
    call_duration_ms = fields.Integer(required=True)
    input_tokens = fields.Integer(required=True)
    output_tokens = fields.Integer(required=True)
    cost_usd = fields.Decimal(as_string=False, places=6, required=True,
                              metadata={"description": "US dollars, exact to 6 decimals, as recorded."})
    status = fields.String(required=True, validate=validate.OneOf(["ok", "error"]))
    error_class = fields.String(required=True, allow_none=True, metadata={"description": "null for ok calls."})


class CallPageSchema(Schema):
    calls = fields.List(fields.Nested(LoggedCallSchema), required=True,
                        metadata={"description": "Newest first (then by the order they were stored)."})
    next_cursor = fields.String(required=True, allow_none=True, metadata={
        "description": "Pass as `cursor` (with the same query) for the next page; null after the last."})


RULES = (
    "Newest first; calls of the same instant in the reverse of the order they were stored. The "
    "window is half-open, [`from`, `to`), and open where a bound is left out. Filters may be "
    "repeated to mean any of them. JSON answers a page of `limit` calls and a `next_cursor`: "
    "paging with it is stable while calls are recorded, every call stored when the first page was "
    "read appears exactly once and calls recorded later do not appear. `Accept: "
    "application/x-ndjson` or `text/csv` exports every matching call in one streamed answer "
    "(`limit` and `cursor` are refused there): NDJSON lines are records that `flask calls import` "
    "reads back, CSV cells that a spreadsheet could run as a formula start with `'`. After `calls "
    "prune`, a window reaching into the pruned calls is a 409 naming the retention horizon, and an "
    "open `from` starts at the horizon.")
PRUNED = ("The window reaches into calls `calls prune` deleted (the message names the retention horizon): "
          "start it at or after the horizon, or leave `from` out to start there.")
EXPORTS = (f"JSON: a page. `{NDJSON}`: one call record a line. `text/csv`: a header row, then a "
           "row per call (RFC 4180, CRLF).")


def _alternatives(func):
    for content_type in (NDJSON, representations.CSV):
        func = blp.alt_response(200, success=True, schema={"type": "string"}, content_type=content_type,
                                description=EXPORTS)(func)
    return func


@blp.route("/calls", methods=["GET"])
@blp.doc(operationId="listTenantCalls", summary="The calls of the caller's tenant",
         description="The key's own tenant's calls. " + RULES)
@require_scope(USAGE_READ)
@blp.arguments(CallLogArgs, location="query", as_kwargs=False)
@_alternatives
@blp.response(200, CallPageSchema, description=EXPORTS)
@blp.errors(401, 422, 429, 503, e409=PRUNED)
def tenant_calls(args):
    tenant_id = g.api_key.tenant_id
    return _answer(args, {"tenant_id": [tenant_id]}, ["tenant", tenant_id], tenant_id)


@blp.route("/all/calls")
@blp.doc(operationId="listAllCalls", summary="The calls of every tenant",
         description="Every tenant's calls, or those of `tenant_id`. " + RULES)
@require_scope(ALL_READ)
@blp.arguments(AllCallLogArgs, location="query", as_kwargs=False)
@_alternatives
@blp.response(200, CallPageSchema, description=EXPORTS)
@blp.errors(401, 422, 429, 503, e403="The key lacks the scope all:read.", e409=PRUNED)
def all_calls(args):
    filters = {"tenant_id": args["tenant_id"]} if args["tenant_id"] else {}
    return _answer(args, filters, ["all"], "all")


def _answer(args, filters, scope, name):
    """The page, or the export the Accept header asks for."""
    window = Window(args["from_"], args["to"])
    filters = {**filters, **{d: args[d] for d in ("operation", "model", "status", "error_class") if args[d]}}
    wanted = request.accept_mimetypes.best_match(["application/json", NDJSON, representations.CSV])
    if wanted in (NDJSON, representations.CSV):
        return _export(window, filters, wanted, name)
    digest = cursors.query_digest(scope, {"from": window.start, "to": window.end, **filters})
    high_water_id = after = None
    if "cursor" in args:
        try:
            after, high_water_id = cursors.decode(args["cursor"], digest)
        except cursors.InvalidCursor as error:
            abort(422, errors={"query": {"cursor": [str(error)]}})
    with calls_log.kept(window) as kept:  # every page checked anew: a prune may come between two
        calls, high_water_id, more = current_app.extensions["usage_repository"].calls_page(
            kept, filters, args["limit"], high_water_id, after)
    next_cursor = None
    if more:
        last = calls[-1]
        next_cursor = cursors.encode(Position(last.timestamp, last.id), high_water_id, digest)
    body = {"calls": [_record(call) for call in calls], "next_cursor": next_cursor}
    return Response(jsonio.response_body(body), mimetype="application/json", headers={"Vary": "Accept"})


def _record(call):
    """A stored call as a record of POST /v1/usage/calls (money a Decimal)."""
    return {"tenant_id": call.tenant_id, "call_id": call.call_id,
            "timestamp": call.timestamp.isoformat().replace("+00:00", "Z"), "operation": call.operation,
            "model": call.model, "call_duration_ms": call.call_duration_ms, "input_tokens": call.input_tokens,
            "output_tokens": call.output_tokens, "cost_usd": call.cost_usd, "status": call.status,
            "error_class": call.error_class}


def _export(window, filters, media_type, name):
    """Every matching call, streamed a chunk at a time (`calls_log.CHUNK_ROWS`).

    The window is checked against the pruned calls (a 409) and the first
    chunk read, in one snapshot, before the answer starts, so that a
    database that does not answer is still a 503; after each later chunk
    the check is repeated, and a prune that reached the window since cuts
    the answer off (below) rather than leave it silently short. Each chunk
    is one statement within the statistics time limit, and the export as a
    whole has none (its worker checks in with gunicorn as it goes,
    app/liveness.py). A failure later cuts the answer off without its last
    chunk of the chunked encoding: clients see an incomplete transfer (curl
    exits with 18), never a short file that looks whole.
    """
    for refused in ("limit", "cursor"):
        if refused in request.args:
            abort(422, errors={"query": {refused: [
                "An export (Accept: text/csv or application/x-ndjson) has every matching call: "
                f"leave out {refused}, or ask for JSON to read a page at a time."]}})
    with calls_log.kept(window) as window:  # decided before the answer starts, with the first chunk
        chunks = current_app.extensions["usage_repository"].calls_export(window, filters)
        first = next(chunks, [])
    write = _csv_chunk if media_type == representations.CSV else _ndjson_chunk
    extension = "csv" if media_type == representations.CSV else "ndjson"

    def body():
        if media_type == representations.CSV:
            yield _csv_rows([FIELDS])
        yield write(first)
        for chunk in chunks:
            calls_log.checked(window)  # a prune begun since: cut off, rather than short (calls_log)
            liveness.notify()  # past gunicorn's timeout, as long as it makes progress
            yield write(chunk)

    filename = (f"calls_{name}_{representations.stamp(window.start)}_"
                f"{representations.stamp(window.end)}.{extension}")
    return Response(stream_with_context(body()), mimetype=media_type, headers={
        "Content-Disposition": f'attachment; filename="{filename}"', "Vary": "Accept"})


def _ndjson_chunk(calls):
    return b"".join(jsonio.compact(_record(call)) + b"\n" for call in calls)


def _csv_chunk(calls):
    return _csv_rows([[representations.spreadsheet_cell(value) for value in _record(call).values()]
                      for call in calls])


def _csv_rows(rows):
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode()
