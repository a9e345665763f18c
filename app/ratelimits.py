"""Rate limits, with flask-limiter: failed authentication per client
address, and (optionally) requests per API key.

- RATE_LIMIT_AUTH_FAILURES (default `40 per 2 seconds`: a burst of 40, then
  20 a second): requests answered 401 from one client address, over any
  moving window of that length. Every request to a route that needs a key
  is checked against it *before* the key is looked up, so beyond the limit
  the answer is 429 with `Retry-After` and the request costs no database
  query. Only 401s count; an address over the limit is refused whatever key
  it sends until its oldest failures leave the window. Routes that need no
  key (/healthz, /readyz, /docs, /metrics) are never limited.
- RATE_LIMIT_PER_KEY (default off), e.g. `100 per second`: requests that
  authenticated with one key, over all routes. Checked before the key is
  looked up, by the key id the request presents, so a refused request costs
  no query either; only authenticated requests count, so failed attempts
  with someone else's key id use up nothing of that key's allowance.

Limits are flask-limiter strings (`N per [count] second|minute|hour|day`,
several separated by `;`). Counts live in each worker's memory by default:
with N workers an address can fail up to N times the limit. With REDIS_URL
they live in Redis, shared by every worker and machine that uses it (keys
prefixed with REDIS_KEY_PREFIX). If Redis does not answer (within 0.5 s),
the request is served unlimited and the failure is logged: a lost Redis
must not take the service down with it.

The client address is request_context's: behind a proxy, set PROXY_COUNT,
or every client shares the proxy's address, and one client's failures lock
everyone out.
"""
import math
import time

from flask import current_app, g
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded
from limits import parse_many
from limits.errors import ConfigurationError as LimitsConfigurationError
from limits.storage import storage_from_string

from . import keys, metrics, request_context
from .api.blueprint import json_error
from .auth import presented_key
from .db.handle import ConfigurationError

AUTH_FAILURES, PER_KEY = "auth-failures", "per-key"
AUTH_FAILURES_DEFAULT = "40 per 2 seconds"
REDIS_TIMEOUTS = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}


def init_app(app):
    """After request_context.init_app: a 429 carries the request id."""
    config = app.config
    storage = config["REDIS_URL"] or "memory://"
    limiter = Limiter(
        key_func=request_context.client_address,
        application_limits=[
            ApplicationLimit(limit_provider=config["RATE_LIMIT_AUTH_FAILURES"], scope=AUTH_FAILURES,
                             key_function=request_context.client_address,
                             exempt_when=_needs_no_key, deduct_when=_failed_authentication),
            ApplicationLimit(limit_provider=config["RATE_LIMIT_PER_KEY"], scope=PER_KEY,
                             key_function=_presented_key_id,
                             exempt_when=_no_key_presented, deduct_when=_authenticated),
        ],
        storage_uri=storage,
        storage_options=REDIS_TIMEOUTS if config["REDIS_URL"] else {},
        strategy="moving-window",
        key_prefix=config["REDIS_KEY_PREFIX"],
        headers_enabled=False,
        swallow_errors=True,  # storage errors: logged, request served unlimited
    )
    limiter.init_app(app)
    app.extensions["rate_limits"] = limiter
    app.register_error_handler(RateLimitExceeded, _too_many_requests)


def limit_setting(variable, text):
    """A flask-limiter limit string from the environment ('' for none)."""
    text = (text or "").strip()
    try:
        if text:
            parse_many(text)
    except ValueError:
        raise ConfigurationError(f"{variable} must be a limit such as '100 per second' or "
                                 f"'40 per 2 seconds', not {text!r}") from None
    return text


def redis_url(text):
    """REDIS_URL, checked by the storage that will use it (nothing connects yet)."""
    text = (text or "").strip()
    if text:
        try:
            storage_from_string(text, **REDIS_TIMEOUTS)
        except LimitsConfigurationError as error:
            raise ConfigurationError(f"REDIS_URL cannot be used: {error}") from None
    return text


def describe(config):
    """The configured limits, in words, for the OpenAPI description."""
    per_key = config["RATE_LIMIT_PER_KEY"] or "none"
    return (f"failed authentications {config['RATE_LIMIT_AUTH_FAILURES'] or 'unlimited'} per address, "
            f"requests {per_key} per key")


def _needs_no_key():
    return not request_context.route_requires_key()


def _failed_authentication(response):
    return response.status_code == 401


def _presented_key_id():
    parts = keys.split_key(presented_key() or "")
    return parts[0] if parts else None


def _no_key_presented():
    return _needs_no_key() or _presented_key_id() is None


def _authenticated(response):
    return g.get("api_key") is not None


def _too_many_requests(error):
    breached = current_app.extensions["rate_limits"].current_limit
    # Moving window: a slot frees when the oldest counted request leaves it.
    retry_after = max(1, math.ceil(breached.window.reset_time - time.time())) if breached else 1
    limit = _in_words(error.limit.limit)
    if error.limit.scope == AUTH_FAILURES:
        metrics.RATE_LIMITED.labels("auth_failures").inc()
        message = (f"Too many failed authentications from {request_context.client_address()} "
                   f"(limit: {limit}); retry in {retry_after} s.")
    else:
        metrics.RATE_LIMITED.labels("per_key").inc()
        message = f"This key's request limit ({limit}) is reached; retry in {retry_after} s."
    return json_error(429, message, headers={"Retry-After": str(retry_after)})


def _in_words(item):
    """'40 per 2 seconds', '100 per minute' (the limits library says '100 per 1 minute')."""
    unit = item.GRANULARITY.name
    return f"{item.amount} per {unit}" if item.multiples == 1 else f"{item.amount} per {item.multiples} {unit}s"
