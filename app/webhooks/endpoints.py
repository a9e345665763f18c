"""Webhook endpoints: the one service layer behind `webhooks create|list|delete`
and /v1/webhooks.

Every write runs in `database.atomic()` with its audit event (app/audit.py),
which never holds the secret. Failures raise the exceptions below (an
unknown tenant: accounts.UnknownTenant), which the CLI turns into one line
and the routes into JSON errors.
"""
import base64
import secrets
from urllib.parse import urlsplit

from .. import accounts, audit
from ..db import database
from ..models import WebhookDelivery, WebhookEndpoint, WebhookEvent, page_of, utcnow
from .outbox import EVENT_TYPES

SCHEMES = ("http", "https")
MAX_URL_LENGTH = 2048
ENDPOINT_ID_PATTERN = r"^wh_[0-9a-f]{16}$"


class WebhookError(Exception):
    """Base class; `str(error)` is the message shown to the user."""


class InvalidWebhook(WebhookError, ValueError):
    """A setting of a new endpoint that cannot work; the message names it."""


class UnknownWebhook(WebhookError, LookupError):
    pass


def checked_url(url):
    """`url` if deliveries can be POSTed to it, else InvalidWebhook saying why."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidWebhook(f"url must be at most {MAX_URL_LENGTH} characters.")
    if not url.isascii() or not url.isprintable() or " " in url:
        raise InvalidWebhook("url must be ASCII without spaces or control characters: percent-encode "
                             "other characters, and write an international host name in punycode.")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port out of range or not a number)
    except ValueError as error:
        raise InvalidWebhook(f"url is not a valid URL: {error}.") from None
    if parts.scheme.lower() not in SCHEMES or not parts.hostname:
        raise InvalidWebhook(f"url must be an http or https URL with a host, not {url!r}.")
    if parts.username is not None:
        raise InvalidWebhook("url must not hold credentials: receivers authenticate deliveries "
                             "by their signature.")
    return url


def checked_events(events):
    """The event types of `events` (None: every type) in EVENT_TYPES order, or InvalidWebhook."""
    if events is None:
        return None
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown:
        raise InvalidWebhook(f"events: unknown event type {unknown[0]!r}; the types are "
                             f"{', '.join(EVENT_TYPES)}.")
    if not events:
        raise InvalidWebhook("events must name at least one type; leave it out for every type.")
    return tuple(name for name in EVENT_TYPES if name in events)


def new_secret():
    """What standardwebhooks.Webhook takes: `whsec_` and the base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def create_endpoint(url, events=None, tenant_id=None):
    """Return the new WebhookEndpoint; its `secret` is shown to the user only now."""
    url, events = checked_url(url), checked_events(events)
    with database.atomic():
        if tenant_id is not None:
            accounts.get_tenant(tenant_id)
        endpoint = WebhookEndpoint.create(
            id=f"wh_{secrets.token_hex(8)}", url=url, secret=new_secret(),
            events_text=None if events is None else " ".join(events), tenant=tenant_id,
            created_at=utcnow())
        audit.record("webhook.create", f"webhook:{endpoint.id}", url=url, events=events,
                     tenant_id=tenant_id)
    return endpoint


def list_endpoints():
    """The endpoints not deleted, oldest first (disabled ones too)."""
    return list(WebhookEndpoint
                .select()
                .where(WebhookEndpoint.deleted_at.is_null())
                .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id))


def get_endpoint(endpoint_id):
    endpoint = WebhookEndpoint.get_or_none((WebhookEndpoint.id == endpoint_id)
                                           & WebhookEndpoint.deleted_at.is_null())
    if endpoint is None:
        raise UnknownWebhook(f"Unknown webhook {endpoint_id!r}.")
    return endpoint


def delete_endpoint(endpoint_id):
    """Stop every delivery to the endpoint: its pending ones become failed.

    The row stays, marked deleted and without its secret, so that an event
    published meanwhile still finds the endpoint its delivery points to (a
    worker then fails that delivery instead of sending it)."""
    now = utcnow()
    with database.atomic():
        deleted = (WebhookEndpoint
                   .update(deleted_at=now, secret=None)
                   .where((WebhookEndpoint.id == endpoint_id) & WebhookEndpoint.deleted_at.is_null())
                   .execute())
        if not deleted:  # unknown, or deleted by someone else meanwhile
            raise UnknownWebhook(f"Unknown webhook {endpoint_id!r}.")
        fail_pending(endpoint_id, "the webhook was deleted")
        audit.record("webhook.delete", f"webhook:{endpoint_id}")


def fail_pending(endpoint_id, reason):
    """Settle every pending delivery to the endpoint as failed; inside the caller's transaction."""
    return (WebhookDelivery
            .update(status=WebhookDelivery.FAILED, next_attempt_at=None, lease_until=None,
                    last_error=reason)
            .where((WebhookDelivery.endpoint == endpoint_id)
                   & (WebhookDelivery.status == WebhookDelivery.PENDING))
            .execute())


def deliveries(endpoint_id, page, page_size):
    """(that 1-based page of the endpoint's deliveries with their events, newest first; the total)."""
    get_endpoint(endpoint_id)
    query = (WebhookDelivery
             .select(WebhookDelivery, WebhookEvent)
             .join(WebhookEvent)
             .where(WebhookDelivery.endpoint == endpoint_id)
             .order_by(WebhookDelivery.id.desc()))
    return page_of(query, page, page_size)
