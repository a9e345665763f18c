"""The representations of a statistics answer: JSON, or CSV for `Accept: text/csv`.

RFC 4180: UTF-8, a header row, CRLF line ends, quoting where needed. Money
keeps its exact six decimals; each distribution is flattened to columns
(`call_duration_avg`, …, `call_duration_p99`, `input_tokens_total`). The
breakdown lists (`by_operation`, `by_model`) have no place in one row per
tenant: the series routes with `group_by` give them as rows.

Text a tenant wrote (a model, an error class) may start like a spreadsheet
formula (`=HYPERLINK(…)`, `+cmd|…`, `@SUM(1)`, `-2+3`): `spreadsheet_cell`
prefixes such a text cell with `'`, as OWASP's CSV-injection guidance says,
so that a spreadsheet shows it as text instead of running it. Numbers are
never changed: a negative number is still a number.

Each representation carries an ETag of its own (flask-smorest's `set_etag`
on the text, or its default on the dumped JSON), so conditional GETs work for
both, and `Vary: Accept` tells caches that the two differ.

In the OpenAPI document, `application/json` comes first wherever an answer
has several media types (`JsonFirst`, whatever the order of the route's
decorators): Swagger UI's "Execute" asks for the first one, and JSON is what
a person trying the API wants to read.
"""
import csv
import hashlib
import io
from decimal import Decimal

from apispec import BasePlugin
from flask import Response, request

from .. import jsonio
from ..statistics import PERCENTILES

JSON = "application/json"
CSV = "text/csv"
# For `@blp.alt_response(200, success=True, **DOC)` above the route's `@blp.response`.
DOC = {"schema": {"type": "string"}, "content_type": CSV}
DESCRIPTION = ("JSON, or with `Accept: text/csv` the same answer as CSV: a header row, then a "
               "row per statistics object, distributions flattened to columns such as "
               "`call_duration_p95`, money with its six decimals.")


def wants_csv():
    return request.accept_mimetypes.best_match([JSON, CSV]) == CSV


class JsonFirst(BasePlugin):
    """An apispec plugin: each response's `content` lists `application/json`
    first, the other media types (CSV, NDJSON, HTML) after it in their order."""

    def operation_helper(self, path=None, operations=None, **kwargs):
        for operation in (operations or {}).values():
            if not isinstance(operation, dict):
                continue
            for response in operation.get("responses", {}).values():
                content = response.get("content") if isinstance(response, dict) else None
                if content and JSON in content:
                    response["content"] = {JSON: content[JSON], **content}


def _stats_columns():
    """(field,) or (distribution, statistic) paths of a statistics object's numbers."""
    columns = [("total_calls",), ("failed_calls",), ("total_cost_usd",)]
    for name, has_total in (("call_duration", False), ("input_tokens", True), ("output_tokens", True)):
        stats = ["avg", "min", "max", *(f"p{p}" for p in PERCENTILES)] + (["total"] if has_total else [])
        columns += [(name, stat) for stat in stats]
    return columns


STATS_COLUMNS = _stats_columns()
STATS_HEADER = ["_".join(path) for path in STATS_COLUMNS]


def stats_cells(stats):
    return [stats[path[0]] if len(path) == 1 else stats[path[0]][path[1]] for path in STATS_COLUMNS]


# What a spreadsheet reads as the start of a formula (or of a line, for
# LF/CR/TAB: some split cells there and read the rest as a new cell).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def spreadsheet_cell(value):
    """The CSV text of a cell: numbers and moments as they are, text that a
    spreadsheet would run as a formula prefixed with `'`."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, str):
        return "'" + value if value.startswith(FORMULA_STARTS) else value
    return str(value)


def stamp(moment):
    return moment.strftime("%Y%m%dT%H%M%SZ") if moment else "open"


def _set_etag(blueprint, representation, data):
    """flask-smorest's ETag (and its 304) from a digest of the body (bytes):
    hashing a megabyte of JSON once, not serializing it again."""
    blueprint.set_etag([representation, hashlib.sha256(data).hexdigest()])


def json_response(blueprint, body):
    """`body`, already in the documented shape, as JSON without a schema dump.

    For series and statistics: marshmallow took longer to dump thousands of
    buckets, or fifty tenants, than the database took to compute them. The
    OpenAPI contract still holds (the contract tests check every response
    against it).
    """
    data = jsonio.response_body(body)
    _set_etag(blueprint, "json", data)
    return Response(data, mimetype="application/json", headers={"Vary": "Accept"})


def csv_response(blueprint, header, rows, filename):
    """A CSV attachment; 304 instead when the client's If-None-Match matches."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([spreadsheet_cell(cell) for cell in row] for row in rows)
    text = buffer.getvalue()
    _set_etag(blueprint, "csv", text.encode())
    return Response(text, mimetype=CSV, headers={
        "Content-Disposition": f'attachment; filename="{filename}"', "Vary": "Accept"})
