"""Answers that depend on an API key stay out of shared caches.

Every response of a route that needs a key (401s, 429s and 304s included),
and every response to a request that presented one, whatever the route,
carries

    Cache-Control: private, no-cache
    Vary: Authorization, X-API-Key   (added to what it already varies on, e.g. Accept)

`private`: a proxy or CDN must not store one tenant's statistics, which it
could otherwise hand to another tenant asking the same URL. `no-cache`: a
browser may keep the answer but asks again before using it, with its ETag,
so conditional GETs keep answering 304. A route that sets its own
Cache-Control keeps it.
"""

from . import request_context
from .auth import presented_key

KEY_HEADERS = ("Authorization", "X-API-Key")
KEYED_CACHE_CONTROL = "private, no-cache"


def init_app(app):
    """Before anything else that adds Vary (flask-cors): after_request hooks
    run last-registered first, so this one merges what they added."""
    app.after_request(_keep_keyed_answers_private)


def vary(response, *names):
    """Add header `names` to the response's Vary, merged with every Vary
    header it already has into one (case-insensitively, in order)."""
    merged = []
    for value in [*response.headers.getlist("Vary"), *names]:
        for name in (part.strip() for part in value.split(",")):
            if name and name.lower() not in (seen.lower() for seen in merged):
                merged.append(name)
    response.headers["Vary"] = ", ".join(merged)


def _keep_keyed_answers_private(response):
    if request_context.route_requires_key() or presented_key() is not None:
        response.headers.setdefault("Cache-Control", KEYED_CACHE_CONTROL)
        vary(response, *KEY_HEADERS)
    return response
