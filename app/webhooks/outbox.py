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

    Call it inside the caller's `database.atomic()`. One query reads the
    endpoints; if none wants the event nothing is written and None is
    returned, else the WebhookEvent (two more statements: the event, its
    deliveries).
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"Unknown event type {event_type!r}: add it to EVENT_TYPES first.")
    if not database.in_transaction():
        raise RuntimeError("publish() belongs in the transaction of what caused the event")
    endpoint_ids = [endpoint_id for endpoint_id, events in _live_endpoints(tenant_id)
                    if events is None or event_type in events.split()]
    if not endpoint_ids:
        return None
    event = WebhookEvent.create(id=f"evt_{secrets.token_hex(16)}", type=event_type, tenant_id=tenant_id,
                                data=json.dumps(data, sort_keys=True), created_at=utcnow())
    (WebhookDelivery
     .insert_many([{"event": event.id, "endpoint": endpoint_id, "status": WebhookDelivery.PENDING,
                    "next_attempt_at": event.created_at} for endpoint_id in endpoint_ids])
     .as_rowcount()
     .execute())
    return event


def _live_endpoints(tenant_id):
    """(id, events text) of the endpoints that may want an event of `tenant_id`."""
    return (WebhookEndpoint
            .select(WebhookEndpoint.id, WebhookEndpoint.events_text)
            .where(WebhookEndpoint.disabled_at.is_null() & WebhookEndpoint.deleted_at.is_null()
                   & (WebhookEndpoint.tenant.is_null() | (WebhookEndpoint.tenant == tenant_id)))
            .tuples())
