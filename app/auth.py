"""The API-key guard: `@require_api_key` and `@require_scope(scope)`.

A key is read from `Authorization: Bearer <key>` or `X-API-Key: <key>`.
Missing, malformed, unknown, revoked or expired keys get 401 with a
`WWW-Authenticate` challenge (an expired key is told so); a key without the
route's scope gets 403 naming the scope (app/scopes.py says what each
allows). The authenticated key is `flask.g.api_key`. Failures are counted in
the metrics, and limited per client address (app/ratelimits.py, which finds
the guarded routes by their `requires_api_key`).
"""
from copy import deepcopy
from functools import wraps

from flask import g, request
from flask_smorest import abort

from . import accounts, metrics

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="usage-service"'}

SECURITY_SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer usk_<key_id>_<secret>`",
    },
    "apiKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "`X-API-Key: usk_<key_id>_<secret>`",
    },
}
# Either scheme is enough (OpenAPI: alternatives are separate list items).
SECURITY = [{"bearerAuth": []}, {"apiKeyHeader": []}]


def presented_key():
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.headers.get("X-API-Key", "").strip() or None


def require_api_key(view):
    """Any live key."""
    @wraps(view)
    def guarded(*args, **kwargs):
        key = presented_key()
        if key is None:
            metrics.AUTH_FAILURES.labels("missing").inc()
            abort(401, message="An API key is required (Authorization: Bearer <key> or X-API-Key).",
                  headers=CHALLENGE)
        try:
            g.api_key = accounts.authenticate(key)
        except accounts.KeyRefused as refused:
            metrics.AUTH_FAILURES.labels(refused.reason).inc()
            abort(401, message=str(refused),
                  headers={"WWW-Authenticate": CHALLENGE["WWW-Authenticate"] + ', error="invalid_token"'})
        return view(*args, **kwargs)

    guarded.requires_api_key = True
    return guarded


def require_scope(*scopes):
    """A live key holding `scopes[0]` (or any one of `scopes`, for a route
    that serves several kinds of key: then the view looks at which). The
    OpenAPI description of the route says which (`Blueprint` reads
    `required_scopes` from the view's doc info)."""
    def decorator(view):
        @wraps(view)
        def guarded(*args, **kwargs):
            if not any(scope in g.api_key.scopes for scope in scopes):
                needed = " or ".join(f"'{scope}'" for scope in scopes)
                abort(403, message=f"This operation needs the scope {needed}; this key has "
                                   f"{', '.join(g.api_key.scopes)}.")
            return view(*args, **kwargs)

        # wraps() shared the inner view's doc info: this route's is its own.
        guarded._apidoc = {**deepcopy(getattr(view, "_apidoc", {})), "required_scopes": scopes}
        return require_api_key(guarded)

    return decorator
