"""Publishing events: the outbox.

An event is written in the same transaction as what caused it (the calls of
an ingested batch, say), together with one pending delivery per endpoint
that wants it. So a crash after the commit loses no event (a delivery
worker sends it later), and a batch that rolls back sends nothing.
"""
import json
import secrets

from ..db import database
from ..models import WebhookDelivery, WebhookEndpoint, WebhookEvent, utcnow

BUDGET_THRESHOLD_CROSSED = "budget.threshold_crossed"
# Every type an endpoint may subscribe to; `publish` refuses any other.
EVENT_TYPES = (BUDGET_THRESHOLD_CROSSED,)


def publish(event_type: str, tenant_id: str, data: dict):
    """Record the event `event_type` of `tenant_id` carrying `data` (JSON-ready:
    strings and numbers; money as a decimal string) for every endpoint that
    wants it now: not disabled nor deleted, subscribed to every type or to
    this one, and to every tenant or to this one.

    Call it inside the caller's `database.atomic()`. If no endpoint wants
    the event nothing is written and None is returned, else the WebhookEvent.
    """
    published = publish_all(event_type, [(tenant_id, data)])
    return published[0] if published else None


def publish_all(event_type: str, events):
    """`publish` each (tenant_id, data) of `events`; return the WebhookEvents
    written. Three statements whatever their number (one reads the
    endpoints, one writes the events, one their deliveries): an ingested
    batch may cross dozens of thresholds at once.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"Unknown event type {event_type!r}: add it to EVENT_TYPES first.")
    if not database.in_transaction():
        raise RuntimeError("publish() belongs in the transaction of what caused the event")
    if not events:
        return []
    endpoints = [(endpoint_id, tenant) for endpoint_id, tenant, events_text in _live_endpoints({t for t, _ in events})
                 if events_text is None or event_type in events_text.split()]
    now = utcnow()
    written, deliveries = [], []
    for tenant_id, data in events:
        wanted = [endpoint_id for endpoint_id, tenant in endpoints if tenant is None or tenant == tenant_id]
        if wanted:
            event = WebhookEvent(id=f"evt_{secrets.token_hex(16)}", type=event_type, tenant_id=tenant_id,
                                 data=json.dumps(data, sort_keys=True), created_at=now)
            written.append(event)
            deliveries += [{"event": event.id, "endpoint": endpoint_id, "status": WebhookDelivery.PENDING,
                            "next_attempt_at": now} for endpoint_id in wanted]
    if written:
        (WebhookEvent
         .insert_many([event.__data__ for event in written])
         .as_rowcount()
         .execute())
        (WebhookDelivery
         .insert_many(deliveries)
         .as_rowcount()
         .execute())
    return written


def _live_endpoints(tenant_ids):
    """(id, tenant, events text) of the endpoints that may want an event of one of `tenant_ids`."""
    return (WebhookEndpoint
            .select(WebhookEndpoint.id, WebhookEndpoint.tenant, WebhookEndpoint.events_text)
            .where(WebhookEndpoint.disabled_at.is_null() & WebhookEndpoint.deleted_at.is_null()
                   & (WebhookEndpoint.tenant.is_null() | WebhookEndpoint.tenant.in_(list(tenant_ids))))
            .tuples())
