"""Prometheus metrics, served at GET /metrics.

Under gunicorn each worker is a process of its own. gunicorn.conf.py sets
PROMETHEUS_MULTIPROC_DIR before any worker starts, so prometheus_client
keeps every worker's values in files there and /metrics adds them up,
whichever worker answers the scrape (its `child_exit` hook retires a dead
worker's files). Without that variable (the Flask test client, `flask run`)
the values live in the process.

/metrics needs no API key, but answers only clients whose address is in
METRICS_ALLOW (default: loopback); anyone else gets the 404 of a route that
does not exist. Behind a reverse proxy set PROXY_COUNT, or every client
would have the proxy's (loopback) address (request_context.py).

All counters count requests since the workers started; Prometheus's rate()
and increase() take restarts in their stride. The webhook gauges are read
from the database at each scrape (`WebhookStates`).

Every label has a bounded set of values, so that no client can grow the
exposition (each new value is a new series in every scrape): `route` is the
URL rule or `unmatched`, `method` a standard HTTP method or `other` (an
invented method is a 405 anyone can send without a key), `status` a status
code HTTP defines or `other`; `tenant` is bounded by the tenants that exist.
"""
import ipaddress
import os
import time

from flask import Response, abort, current_app, request
from peewee import DatabaseError, InterfaceError, fn
from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram,
                               generate_latest)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from werkzeug.http import HTTP_STATUS_CODES

from . import request_context
from .db.handle import ConfigurationError
from .models import WebhookDelivery, WebhookEndpoint

REQUESTS = Counter(
    "usage_http_requests", "Requests answered, by route template, method and status.",
    ["route", "method", "status"])
LATENCY = Histogram(
    "usage_http_request_duration_seconds", "Time to answer a request, by route template and method.",
    ["route", "method"],
    # From a probe (~1 ms) to statistics at DB_STATISTICS_TIMEOUT (30 s).
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
CALLS_INGESTED = Counter(
    "usage_calls_ingested", "Call records stored (created) or skipped as already stored (duplicate) "
    "by POST /v1/usage/calls, by tenant.", ["tenant", "result"])
AUTH_FAILURES = Counter(
    "usage_auth_failures", "Requests refused 401: no key (missing), a key that is malformed, "
    "unknown or revoked (invalid), or one past its expiry (expired).", ["reason"])
RATE_LIMITED = Counter(
    "usage_rate_limited", "Requests refused 429, by limit: auth_failures (per client address) "
    "or per_key.", ["limit"])
DATABASE_ERRORS = Counter(
    "usage_database_errors", "Requests answered 503 because of the database, by kind: timeout "
    "(a time limit or lock wait ran out) or error (refused, lost, missing).", ["kind"])


class WebhookStates:
    """Webhook deliveries by status, and endpoints disabled by a 410, read
    from the database at each scrape. Deliveries are made by workers of their
    own (`webhooks deliver`, app/webhooks/), whose counters gunicorn's
    /metrics could not add up; the database holds every worker's outcomes.
    A database that does not answer leaves them out of the scrape."""

    def collect(self):
        try:
            by_status = dict(WebhookDelivery
                             .select(WebhookDelivery.status, fn.COUNT(WebhookDelivery.id))
                             .group_by(WebhookDelivery.status)
                             .tuples())
            disabled = WebhookEndpoint.select().where(WebhookEndpoint.disabled_at.is_null(False)
                                                      & WebhookEndpoint.deleted_at.is_null()).count()
        except (DatabaseError, InterfaceError):
            return
        deliveries = GaugeMetricFamily(
            "usage_webhook_deliveries", "Webhook deliveries by status: pending (to be sent or retried), "
            "delivered, failed (every retry used, 410 Gone, or the webhook deleted).", labels=["status"])
        for status in (WebhookDelivery.PENDING, WebhookDelivery.DELIVERED, WebhookDelivery.FAILED):
            deliveries.add_metric([status], by_status.get(status, 0))
        yield deliveries
        yield GaugeMetricFamily("usage_webhook_endpoints_disabled",
                                "Webhook endpoints disabled because their receiver answered 410 Gone.",
                                value=disabled)


# Collectors of what the database holds, added to every scrape.
DATABASE_STATE = CollectorRegistry(auto_describe=False)
DATABASE_STATE.register(WebhookStates())

UNMATCHED = "unmatched"  # the route label of requests no route matched (404, 405)
OTHER = "other"  # the method or status label of anything outside the known sets
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"))
LOOPBACK = "127.0.0.0/8,::1"


def init_app(app):
    app.before_request(_hide_from_others)
    app.after_request(_count_request)
    app.add_url_rule("/metrics", "metrics", _metrics)


def allowed_networks(text):
    """METRICS_ALLOW: comma-separated addresses or networks (CIDR)."""
    try:
        return tuple(ipaddress.ip_network(part.strip(), strict=False)
                     for part in (text or LOOPBACK).split(",") if part.strip())
    except ValueError as error:
        raise ConfigurationError(f"METRICS_ALLOW must list IP addresses or networks: {error}") from None


def calls_ingested(by_tenant):
    """Count an ingested batch: {tenant_id: (created, duplicates)}."""
    for tenant_id, (created, duplicates) in by_tenant.items():
        CALLS_INGESTED.labels(tenant_id, "created").inc(created)
        CALLS_INGESTED.labels(tenant_id, "duplicate").inc(duplicates)


def _hide_from_others():
    if request.endpoint == "metrics" and not _may_scrape(request_context.client_address()):
        abort(404)


def _may_scrape(address):
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    ip = getattr(ip, "ipv4_mapped", None) or ip  # ::ffff:127.0.0.1 on a dual-stack socket
    return any(ip in network for network in current_app.config["METRICS_ALLOW"])


def _count_request(response):
    rule = request.url_rule
    route = rule.rule if rule is not None else UNMATCHED
    method = request.method if request.method in METHODS else OTHER
    status = str(response.status_code) if response.status_code in HTTP_STATUS_CODES else OTHER
    REQUESTS.labels(route, method, status).inc()
    LATENCY.labels(route, method).observe(time.monotonic() - request_context.started())
    return response


def _metrics():
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return Response(generate_latest(registry) + generate_latest(DATABASE_STATE), mimetype=None,
                    headers={"Content-Type": CONTENT_TYPE_LATEST})
