"""Application-wide HTTP errors with a message that says what to do.

flask-smorest already turns every HTTP error into its JSON shape
(`ServiceApi` adds the request id to it); the handlers below add the
message where Werkzeug raises the error without one.
"""
from flask import current_app, request
from flask_smorest import Api
from flask_smorest.error_handler import ErrorSchema as SmorestErrorSchema
from marshmallow import fields
from werkzeug.exceptions import NotFound, RequestEntityTooLarge

from .. import request_context
from ..repository.rollups import RollupsNotBuilt
from ..retention import BeforeHorizon
from .blueprint import json_error, too_large_message
from .representations import JsonFirst


class ErrorSchema(SmorestErrorSchema):
    """Documents every error body: flask-smorest's fields and the request id."""

    request_id = fields.String(metadata={
        "description": "The request's id, as in the X-Request-ID header and the service's log "
                       "lines: quote it when reporting a problem."})


class ServiceApi(Api):
    """flask-smorest's Api whose error bodies also carry `request_id`, and
    whose OpenAPI document lists JSON first among an answer's media types
    (representations.JsonFirst) and ends with a newline."""

    ERROR_SCHEMA = ErrorSchema

    def __init__(self, app=None, *, spec_kwargs=None, **kwargs):
        spec_kwargs = dict(spec_kwargs or {})
        spec_kwargs["extra_plugins"] = [*spec_kwargs.get("extra_plugins", ()), JsonFirst()]
        super().__init__(app, spec_kwargs=spec_kwargs, **kwargs)

    def _openapi_json(self):
        """/openapi.json, ending with a newline as every JSON answer (app/jsonio.py)."""
        response = super()._openapi_json()
        response.set_data(response.get_data() + b"\n")
        return response

    def handle_http_exception(self, error):
        payload, code, headers = super().handle_http_exception(error)
        payload["request_id"] = request_context.current_id()
        return payload, code, headers


def not_found(error):
    message = (getattr(error, "data", None) or {}).get("message")
    if message is None:  # no route matched: a typo, or an id of the wrong shape
        if request.path.startswith("/v1/keys/"):
            message = ("Unknown key id: a key id is the 16 hex digits after 'usk_' in the key "
                       "(as `keys list` and /v1/me show it).")
        else:
            message = f"Nothing at {request.path}; the routes are listed at /docs."
    return json_error(404, message)


def too_large(error):
    return json_error(413, too_large_message(current_app.config["MAX_CONTENT_LENGTH"]))


def rollups_not_built(error):
    return json_error(503, str(error))


def before_horizon(error):
    """Raw calls an answer needs were pruned (app/retention.py): a 409 whatever the route."""
    return json_error(409, str(error))


def register_error_handlers(app):
    app.register_error_handler(RollupsNotBuilt, rollups_not_built)
    app.register_error_handler(BeforeHorizon, before_horizon)
    app.register_error_handler(NotFound, not_found)
    app.register_error_handler(RequestEntityTooLarge, too_large)
