"""JSON in and out with exact money.

Outgoing `Decimal`s are written as JSON numbers with their exact digits
(simplejson's `use_decimal`; the standard library can only write them as
strings or lossy floats). Incoming non-integer numbers are read as `Decimal`,
so `0.1` stays 0.1 and a seventh decimal place is seen, not rounded away.
"""
import simplejson
from flask.json.provider import DefaultJSONProvider
from flask_smorest import Blueprint as SmorestBlueprint
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request

from .records import parse_json


class ExactJSONProvider(DefaultJSONProvider):
    sort_keys = False

    def dumps(self, obj, **kwargs):
        kwargs.setdefault("default", self.default)
        kwargs.setdefault("sort_keys", self.sort_keys)
        return simplejson.dumps(obj, use_decimal=True, **kwargs)

    def loads(self, s, **kwargs):
        return parse_json(s)


class ExactJSONParser(FlaskParser):
    def _raw_load_json(self, req):
        if not is_json_request(req):
            return core.missing
        return parse_json(req.get_data(cache=True))


class Blueprint(SmorestBlueprint):
    """flask-smorest's Blueprint, parsing request bodies with exact decimals."""

    ARGUMENTS_PARSER = ExactJSONParser()
