"""The usage service: an application factory in the Flask-tutorial style."""
import os
import re
import sqlite3

import psycopg
from flask import Flask, current_app, request
from flask_cors import CORS
from peewee import InterfaceError, OperationalError

from . import api as routes
from . import (caching, cli, dashboard, docs, local_days, logs, metrics, ratelimits, request_context, retention,
               timestamp_range)
from .api.blueprint import json_error
from .api.errors import ServiceApi
from .auth import SECURITY, SECURITY_SCHEMES
from .db import ConfigurationError, Limits, database, failures, open_database
from .jsonio import ExactJSONProvider
from .repository import PeeweeUsageRepository
from .webhooks import settings as webhook_settings

CORS_PATHS = r"/v1/*"  # a regular expression, matched at the start of the path, as flask-cors does

API_DESCRIPTION = (
    "Records every LLM call a multi-tenant backend makes and answers usage statistics.\n\n"
    "Authenticate with an API key (`usk_<key_id>_<secret>`) as `Authorization: Bearer <key>` "
    "or `X-API-Key: <key>`. Each operation needs one scope, named in its description: "
    "`usage:read` (the key's own tenant's statistics), `calls:write` (recording calls), "
    "`all:read` (every tenant's statistics) or `admin` (tenants, keys, budgets, webhooks, the "
    "audit log); a key "
    "without it gets 403 naming it. Tenant keys act on their own tenant; superuser keys may "
    "reach every tenant. Errors are JSON: "
    "`{code, status, message?, errors?, request_id}`. Every response carries `X-Request-ID` "
    "(the client's own, if it sent a sane one): quote it when reporting a problem. "
    "Money is a JSON number exact to 6 decimals; timestamps are RFC 3339 in UTC.\n\n"
    "Rate limits: failed authentications from one address (RATE_LIMIT_AUTH_FAILURES), and "
    "requests per key where RATE_LIMIT_PER_KEY is set; beyond them, 429 with `Retry-After` "
    "(seconds)."
)


def create_app(config=None):
    """Build the app. Configuration comes from the environment, then `config`.

    DATABASE_URL      playhouse.db_url syntax; default: SQLite file in the instance folder.
    MAX_CONTENT_LENGTH  request body limit in bytes (default 8 MiB; more gets 413).
    CORS_ORIGINS      comma-separated origins whose browser pages may call /v1
                      (default none: no CORS headers at all).

    Time limits, in seconds (fractions allowed). A request that hits one gets
    503 JSON instead of a worker hung until gunicorn kills it (`make run` gives
    gunicorn 120 s, so the defaults stay well under that):
    DB_CONNECT_TIMEOUT     2   opening a PostgreSQL connection (psycopg rounds up
                               to whole seconds, at least 2).
    DB_STATEMENT_TIMEOUT   10  each PostgreSQL statement: writes, key checks,
                               everything but statistics (server-side
                               statement_timeout, and a client-side deadline 1 s
                               later for a server too stuck to cancel).
    DB_STATISTICS_TIMEOUT  30  all statements of one statistics request together
                               (/v1/usage, /v1/usage/all), on PostgreSQL and
                               SQLite: percentiles sort the whole window.
    READYZ_TIMEOUT         2   /readyz answers 503 when the database has not
                               answered `SELECT 1` by then, whatever it is doing.

    Operation (each explained in its module):
    LOG_FORMAT        text (default) or json: app/logs.py.
    METRICS_ALLOW     addresses that may read /metrics (default loopback): app/metrics.py.
    PROXY_COUNT       reverse proxies trusted for X-Forwarded-For (default 0): app/request_context.py.
    RATE_LIMIT_AUTH_FAILURES, RATE_LIMIT_PER_KEY, REDIS_URL, REDIS_KEY_PREFIX: app/ratelimits.py.
    CALLS_ACCEPTED_FROM, CALLS_ACCEPTED_AHEAD: the timestamps a call may have, app/timestamp_range.py.
    RETENTION_DAYS: whole UTC days of raw calls `calls prune` keeps (unset: all), app/retention.py.
    ROLLUP_ZONES: zones whose local days get cells of their own (default none), app/local_days.py.
    WEBHOOK_RETRY_DELAYS, WEBHOOK_TIMEOUT: webhook delivery, app/webhooks/settings.py.
    """
    # No static folder: the dashboard and /docs serve their own files.
    app = Flask(__name__, instance_relative_config=True, static_folder=None)
    # Werkzeug answers `//` in a path with a redirect to an absolute URL built
    # from the client's Host header; without merging, such a path is a 404.
    app.url_map.merge_slashes = False
    app.config.from_mapping(
        DATABASE_URL=os.environ.get("DATABASE_URL")
        or "sqlite:///" + os.path.join(app.instance_path, "usage.db"),
        MAX_CONTENT_LENGTH=int(os.environ.get("MAX_CONTENT_LENGTH", 8 * 1024 * 1024)),
        CORS_ORIGINS=os.environ.get("CORS_ORIGINS", ""),
        DB_CONNECT_TIMEOUT=_seconds("DB_CONNECT_TIMEOUT", Limits().connect),
        DB_STATEMENT_TIMEOUT=_seconds("DB_STATEMENT_TIMEOUT", Limits().statement),
        DB_STATISTICS_TIMEOUT=_seconds("DB_STATISTICS_TIMEOUT", Limits().statistics),
        READYZ_TIMEOUT=_seconds("READYZ_TIMEOUT", 2),
        LOG_FORMAT=os.environ.get("LOG_FORMAT", "text"),
        METRICS_ALLOW=os.environ.get("METRICS_ALLOW", metrics.LOOPBACK),
        PROXY_COUNT=os.environ.get("PROXY_COUNT", "0"),
        RATE_LIMIT_AUTH_FAILURES=os.environ.get("RATE_LIMIT_AUTH_FAILURES", ratelimits.AUTH_FAILURES_DEFAULT),
        RATE_LIMIT_PER_KEY=os.environ.get("RATE_LIMIT_PER_KEY", ""),
        REDIS_URL=os.environ.get("REDIS_URL", ""),
        REDIS_KEY_PREFIX=os.environ.get("REDIS_KEY_PREFIX", "usage"),
        CALLS_ACCEPTED_FROM=os.environ.get("CALLS_ACCEPTED_FROM", timestamp_range.FROM_DEFAULT),
        CALLS_ACCEPTED_AHEAD=os.environ.get("CALLS_ACCEPTED_AHEAD", timestamp_range.AHEAD_DEFAULT),
        RETENTION_DAYS=os.environ.get("RETENTION_DAYS"),
        ROLLUP_ZONES=os.environ.get("ROLLUP_ZONES", ""),
        WEBHOOK_RETRY_DELAYS=os.environ.get("WEBHOOK_RETRY_DELAYS") or webhook_settings.RETRY_DELAYS_DEFAULT,
        WEBHOOK_TIMEOUT=os.environ.get("WEBHOOK_TIMEOUT") or webhook_settings.TIMEOUT_DEFAULT,
        API_TITLE="Usage service",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH=docs.DOCS_PATH,
        OPENAPI_SWAGGER_UI_URL=docs.ASSETS_URL,
        API_SPEC_OPTIONS={
            "info": {"description": API_DESCRIPTION},
            "security": SECURITY,
            "components": {"securitySchemes": SECURITY_SCHEMES},
        },
    )
    if config:
        app.config.update(config)
    _check_operation_settings(app.config)
    timestamp_range.check_settings(app.config)
    retention.check_settings(app.config)
    webhook_settings.check_settings(app.config)
    os.makedirs(app.instance_path, exist_ok=True)
    app.config["API_SPEC_OPTIONS"]["info"]["description"] = (
        f"{API_DESCRIPTION} Here: {ratelimits.describe(app.config)}.")

    # Order matters: the log handler first (anything may log), then the
    # request id (the rate limiter's 429s carry it), then the limiter.
    logs.init_app(app)
    request_context.init_app(app)
    ratelimits.init_app(app)
    metrics.init_app(app)
    caching.init_app(app)

    limits = Limits(connect=float(app.config["DB_CONNECT_TIMEOUT"]),
                    statement=float(app.config["DB_STATEMENT_TIMEOUT"]),
                    statistics=float(app.config["DB_STATISTICS_TIMEOUT"]))
    database.initialize(open_database(app.config["DATABASE_URL"], limits))
    app.teardown_appcontext(_close_database)
    app.extensions["usage_repository"] = PeeweeUsageRepository()
    app.json = ExactJSONProvider(app)

    docs.init_app(app)
    api = ServiceApi(app)
    routes.register(app, api)
    app.register_blueprint(dashboard.blp)
    _allow_cross_origin(app)
    # Peewee wraps the drivers' errors when a statement runs, but not while
    # rows are fetched: an interrupt at the statistics limit can surface there.
    for error in (OperationalError, InterfaceError, sqlite3.OperationalError, psycopg.OperationalError):
        app.register_error_handler(error, _database_unavailable)
    cli.register(app)
    return app


def _allow_cross_origin(app):
    """CORS for /v1 from the CORS_ORIGINS only: a browser dashboard on another
    origin may send the API-key headers and read ETag, pagination and the CSV
    file name. Credentials (cookies) are never involved: keys travel in headers.

    Every /v1 response then says `Vary: Origin`, with one origin too (where
    flask-cors leaves it out): Access-Control-Allow-Origin is sent only to
    that origin's pages, so a cache must not hand one origin's answer to another."""
    origins = [o.strip() for o in app.config["CORS_ORIGINS"].split(",") if o.strip()]
    if origins:
        app.after_request(_vary_by_origin)  # registered first, runs after flask-cors's
        CORS(app, resources={CORS_PATHS: {"origins": origins}},
             allow_headers=["Authorization", "X-API-Key", "Content-Type", "If-None-Match"],
             expose_headers=["ETag", "X-Pagination", "Content-Disposition"],
             max_age=600)


def _vary_by_origin(response):
    if re.match(CORS_PATHS, request.path):
        caching.vary(response, "Origin")
    return response


def _seconds(variable, default):
    """A positive number of seconds from the environment variable, else `default`."""
    text = os.environ.get(variable)
    if not text:
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0
    if not 0 < seconds < float("inf"):
        raise ConfigurationError(f"{variable} must be a positive number of seconds, not {text!r}")
    return seconds


def _check_operation_settings(config):
    """Each operation setting checked and parsed in place; ConfigurationError names a bad one."""
    config["LOG_FORMAT"] = logs.log_format(config["LOG_FORMAT"])
    config["METRICS_ALLOW"] = metrics.allowed_networks(config["METRICS_ALLOW"])
    config["ROLLUP_ZONES"] = local_days.zones_setting(config["ROLLUP_ZONES"])
    config["PROXY_COUNT"] = request_context.proxy_count(str(config["PROXY_COUNT"]))
    config["REDIS_URL"] = ratelimits.redis_url(config["REDIS_URL"])
    for variable in ("RATE_LIMIT_AUTH_FAILURES", "RATE_LIMIT_PER_KEY"):
        config[variable] = ratelimits.limit_setting(variable, config[variable])


def _database_unavailable(error):
    """A database that refuses connections, stays locked, or does not answer
    within its time limit (see create_app) is a 503, not a 500."""
    current_app.logger.warning("database unavailable: %s", error)
    metrics.DATABASE_ERRORS.labels(failures.kind(error)).inc()
    return json_error(503, "The database does not answer; retry later.")


def _close_database(exc):
    if not database.is_closed():
        database.close()
