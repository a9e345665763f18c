"""Flask's JSON provider, with exact money.

Outgoing `Decimal`s are written as JSON numbers with their exact digits
(simplejson's `use_decimal`; the standard library can only write them as
strings or lossy floats). Incoming non-integer numbers are read as `Decimal`.
"""
import simplejson
from flask.json.provider import DefaultJSONProvider

from .records import parse_json


class ExactJSONProvider(DefaultJSONProvider):
    sort_keys = False

    def dumps(self, obj, **kwargs):
        kwargs.setdefault("default", self.default)
        kwargs.setdefault("sort_keys", self.sort_keys)
        return simplejson.dumps(obj, use_decimal=True, **kwargs)

    def loads(self, s, **kwargs):
        return parse_json(s)
