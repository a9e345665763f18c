"""The API-key guard: `@require_api_key` and `@require_superuser`.

A key is read from `Authorization: Bearer <key>` or `X-API-Key: <key>`.
Missing, malformed, unknown or revoked keys get 401 with a
`WWW-Authenticate` challenge; a tenant key on a superuser route gets 403.
The authenticated key is `flask.g.api_key`. Failures are counted in the
metrics, and limited per client address (app/ratelimits.py, which finds the
guarded routes by their `requires_api_key`).
"""
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
    @wraps(view)
    def guarded(*args, **kwargs):
        key = presented_key()
        if key is None:
            metrics.AUTH_FAILURES.labels("missing").inc()
            abort(401, message="An API key is required (Authorization: Bearer <key> or X-API-Key).",
                  headers=CHALLENGE)
        api_key = accounts.authenticate(key)
        if api_key is None:
            metrics.AUTH_FAILURES.labels("invalid").inc()
            abort(401, message="The API key is unknown or revoked.",
                  headers={"WWW-Authenticate": CHALLENGE["WWW-Authenticate"] + ', error="invalid_token"'})
        g.api_key = api_key
        return view(*args, **kwargs)

    guarded.requires_api_key = True
    return guarded


def require_superuser(view):
    @wraps(view)
    def guarded(*args, **kwargs):
        if not g.api_key.is_superuser:
            abort(403, message="This operation needs a superuser key.")
        return view(*args, **kwargs)

    return require_api_key(guarded)
