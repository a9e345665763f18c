"""`GET /`: where to go from here, for a person who opened the service's address.

Two representations of the same links, chosen by the Accept header:

- JSON (`{"service": ..., "links": {...}}`) for API clients: curl, scripts,
  `Accept: */*` or `application/json`, or no Accept header at all;
- a small HTML page of links for a browser, whose Accept header prefers
  `text/html`.

The page is static text: it is rendered once, when this module is imported,
from `LINKS` and `LABELS` through an autoescaping template, and holds nothing
from the request. Its policy allows no script, style or image at all. Both
answers say `Vary: Accept`, so that a cache keeps them apart.
"""
from flask import Response, request
from jinja2 import Environment
from marshmallow import Schema, fields

from ..dashboard import SECURITY_HEADERS
from .blueprint import Blueprint
from .representations import JSON

blp = Blueprint("index", __name__, description="Where to start (no API key).")

HTML = "text/html"

LINKS = {
    "dashboard": "/dashboard",
    "docs": "/docs",
    "openapi": "/openapi.json",
    "health": "/healthz",
    "ready": "/readyz",
}
LABELS = {
    "dashboard": "Usage dashboard",
    "docs": "API documentation (Swagger UI)",
    "openapi": "OpenAPI document",
    "health": "Health: the service answers",
    "ready": "Readiness: the service and its database answer",
}

PAGE_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
</head>
<body>
<h1>{{ title }}</h1>
<p>Records every LLM call of a multi-tenant backend and answers usage statistics.</p>
<ul>
{%- for name, href in links.items() %}
<li><a href="{{ href }}">{{ labels[name] }}</a> <code>{{ href }}</code></li>
{%- endfor %}
</ul>
<p>API clients get these links as JSON (<code>Accept: application/json</code>).</p>
</body>
</html>
"""


def render_page(links, labels):
    """The HTML page of `links` (name: path), each shown with its label, every value escaped."""
    return _TEMPLATE.render(title="Usage service", links=links, labels=labels)


_TEMPLATE = Environment(autoescape=True).from_string(PAGE_TEMPLATE)
PAGE = render_page(LINKS, LABELS)
PAGE_HEADERS = {
    **SECURITY_HEADERS,
    "Content-Security-Policy": "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "Vary": "Accept",
}


class IndexSchema(Schema):
    service = fields.String(required=True, metadata={"example": "usage-service"})
    links = fields.Dict(keys=fields.String(), values=fields.String(), required=True,
                        metadata={"description": "The dashboard, Swagger UI, the OpenAPI document and the probes."})


@blp.route("/")
@blp.doc(operationId="getIndex", security=[], summary="Links to the documentation and probes",
         description="Answers with links to the usage dashboard (`/dashboard`), Swagger UI (`/docs`), "
                     "the OpenAPI document and the probes: as JSON for API clients, as a small HTML "
                     "page for a browser (an Accept header that prefers `text/html`).")
@blp.alt_response(200, success=True, schema={"type": "string"}, content_type=HTML)
@blp.response(200, IndexSchema, description="The links, as JSON or (`Accept: text/html`) as an HTML page.")
def index():
    if request.accept_mimetypes.best_match([JSON, HTML]) == HTML:
        return Response(PAGE, mimetype=HTML, headers=PAGE_HEADERS)
    return {"service": "usage-service", "links": LINKS}, 200, {"Vary": "Accept"}
