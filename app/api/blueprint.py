"""The Blueprint every route module uses: flask-smorest's, plus

- request bodies parsed with exact decimals (`0.1` stays 0.1, a seventh
  decimal place is seen rather than rounded away), read up to
  MAX_CONTENT_LENGTH even when chunked (413 past it), and refused with 415
  unless they are sent as JSON;
- unknown query parameters refused (422 naming them): `?start=` must not
  silently mean "all history";
- `errors(...)`: documents the JSON error responses a route can return, with
  one standard description per status;
- the `X-Pagination` header documented as what it is, a JSON-encoded object;
- URL converters for tenant and key ids, documented with their patterns.
"""
from flask_smorest import Blueprint as SmorestBlueprint
from flask_smorest import abort
from marshmallow import RAISE
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.routing import BaseConverter

from .. import accounts, keys, request_context, scopes
from ..records import InvalidJSON, parse_json

ERROR_DESCRIPTIONS = {
    400: "The body is not valid JSON.",
    401: "Missing, unknown, revoked or expired API key (see the WWW-Authenticate header).",
    403: "The key lacks the scope this operation needs (the message names it), or wrote for "
         "another tenant.",
    404: "Not found.",
    409: "Conflicts with what exists.",
    413: "The body exceeds the size limit (MAX_CONTENT_LENGTH).",
    415: "The body is not sent as `Content-Type: application/json`.",
    422: "Invalid input; `errors` names each bad parameter or field.",
    429: "Too many failed authentications from this address (RATE_LIMIT_AUTH_FAILURES), or this "
         "key's request limit is reached (RATE_LIMIT_PER_KEY, if set); nothing was looked up. "
         "Retry after `Retry-After` seconds.",
    503: "The database does not answer; retry later.",
}
ERROR_HEADERS = {
    429: {"Retry-After": {"description": "Seconds until a request may succeed.",
                          "schema": {"type": "integer", "minimum": 1}}},
}


def json_error(code, message, headers=None):
    """A response in flask-smorest's error shape, for error handlers (where abort() cannot be used)."""
    body = {"code": code, "status": HTTP_STATUS_CODES[code], "message": message,
            "request_id": request_context.current_id()}
    return body, code, headers or {}


def too_large_message(limit):
    return f"The body exceeds the limit of {limit:,} bytes (MAX_CONTENT_LENGTH)."


def read_body(req):
    """The request body, at most MAX_CONTENT_LENGTH bytes, else 413.

    gunicorn marks chunked bodies as terminated, and Werkzeug then hands the
    stream over without a length: `get_data()` would quietly stop at the
    limit and parse a truncated body. Reading one byte past it tells.
    """
    limit = req.max_content_length
    if limit is None:
        return req.get_data(cache=True)
    chunks, size = [], 0
    while size <= limit:
        chunk = req.stream.read(min(64 * 1024, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    raise RequestEntityTooLarge(too_large_message(limit))


class ExactJSONParser(FlaskParser):
    DEFAULT_UNKNOWN_BY_LOCATION = {**FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
                                   "query": RAISE, "querystring": RAISE}

    def _raw_load_json(self, req):
        if not is_json_request(req):
            if req.mimetype or req.content_length:
                abort(415, message=f"Send the body as JSON with 'Content-Type: application/json' "
                                   f"(got {req.mimetype or 'no content type'!r}).")
            return core.missing
        try:
            return parse_json(read_body(req))
        except InvalidJSON as error:
            abort(400, message=f"The body is not valid JSON: {error}.")


class Blueprint(SmorestBlueprint):
    ARGUMENTS_PARSER = ExactJSONParser()
    PAGINATION_ARGUMENTS_PARSER = ExactJSONParser()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._prepare_doc_cbks.append(self._document_scope)

    @staticmethod
    def _document_scope(doc, doc_info, **kwargs):
        """The scope `auth.require_scope` enforces, said in the operation's
        description and as `x-required-scope` (several: any one of them,
        space-separated): written from the same value, so the contract
        cannot drift from what is enforced."""
        names = doc_info.get("required_scopes")
        if names:
            manual = doc_info.setdefault("manual_doc", {})
            said = "; or ".join(f"`{name}`: {scopes.SCOPES[name]}" for name in names)
            manual["description"] = f"{manual.get('description', '')}\n\n**Scope:** {said}.".lstrip()
            doc["x-required-scope"] = " ".join(names)
        return doc

    def errors(self, *codes, **descriptions):
        """Document error responses: `@blp.errors(401, 403, e404="Unknown tenant.")`."""
        overrides = {int(name[1:]): text for name, text in descriptions.items()}

        def decorator(func):
            for code in sorted(set(codes) | set(overrides)):
                description = overrides.get(code, ERROR_DESCRIPTIONS[code])
                func = self.alt_response(code, schema="Error", description=description,
                                         headers=ERROR_HEADERS.get(code))(func)
            return func

        return decorator

    def _document_pagination_metadata(self, spec, resp_doc):
        resp_doc.setdefault("headers", {})[self.PAGINATION_HEADER_NAME] = {
            "description": "Pagination metadata, a JSON-encoded object: total, total_pages, "
                           "first_page, last_page, page, previous_page, next_page.",
            "schema": {"type": "string"},
        }


class TenantIdConverter(BaseConverter):
    """`<tenant_id:…>`: only a valid slug routes; anything else is a 404 before any query."""

    regex = accounts.TENANT_ID_PATTERN.strip("^$")
    schema = {"type": "string", "pattern": accounts.TENANT_ID_PATTERN}


class KeyIdConverter(BaseConverter):
    """`<key_id:…>`: 16 lowercase hex digits."""

    regex = keys.KEY_ID_PATTERN.strip("^$")
    schema = {"type": "string", "pattern": keys.KEY_ID_PATTERN}


CONVERTERS = {"tenant_id": TenantIdConverter, "key_id": KeyIdConverter}


def register_converters(app, api):
    for name, converter in CONVERTERS.items():
        app.url_map.converters[name] = converter
        api.register_converter(converter, lambda conv: dict(conv.schema))
