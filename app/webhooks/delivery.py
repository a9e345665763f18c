"""Delivering events: claiming a due delivery, sending it, settling the outcome.

A worker claims one due delivery in a short transaction: the claim adds one
to `attempts` and leases the row until the attempt's timeout and a margin
have passed (`next_attempt_at` moves there too, so a worker that dies
mid-attempt leaves a row that falls due again when its lease ends).
PostgreSQL claims with `FOR UPDATE SKIP LOCKED`, so concurrent workers pass
over each other's rows instead of waiting; SQLite runs the claim as one
`UPDATE … RETURNING` statement, and its writers take turns. The POST is sent
outside any transaction; its outcome is then written only if the row still
holds this claim's `attempts` (the claim's fencing token): a worker whose
lease ran out and whose row was claimed again records nothing. So no two
workers send a delivery at the same time, and no success is recorded twice.

Outcomes: a 2xx delivers. 410 Gone disables the endpoint: no delivery is
created for it any more and its pending ones fail. Anything else (another
status, a 3xx, a timeout, no connection) is retried after the next delay of
WEBHOOK_RETRY_DELAYS, or after the receiver's Retry-After when that is
longer (at most the longest delay); once every delay is used, it fails.
"""
import datetime as dt
import logging
from dataclasses import dataclass

from peewee import PostgresqlDatabase

from ..db import database, fetch_all
from ..models import WebhookDelivery, WebhookEndpoint, WebhookEvent, utcnow
from . import sending
from .endpoints import fail_pending

logger = logging.getLogger(__name__)

# Beyond the attempt's timeout, a lease covers the moments between claiming
# and sending, and small differences between the clocks of worker hosts.
LEASE_MARGIN = 2.0
DELIVERED, RETRIED, FAILED, DISABLED, LOST = "delivered", "retried", "failed", "disabled", "lost"


@dataclass(frozen=True)
class Claim:
    """A delivery this worker may send now; `attempt` is the count its claim set."""

    delivery_id: int
    attempt: int
    event_id: str
    event_type: str
    event_created_at: dt.datetime
    data_text: str
    endpoint_id: str
    url: str
    secret: str


def deliver_next(config):
    """Claim one due delivery, send it and settle it: True, or False if none was due."""
    claim = claim_next(config["WEBHOOK_TIMEOUT"])
    if claim is None:
        return False
    payload = sending.body(claim.event_type, claim.event_created_at, claim.data_text)
    answer = sending.post(claim.url, payload,
                          sending.headers(claim.event_id, claim.secret, payload, utcnow()),
                          config["WEBHOOK_TIMEOUT"])
    result, delay = settle(claim, answer, config["WEBHOOK_RETRY_DELAYS"])
    then = ""
    if result == RETRIED:
        then = f"; next attempt in {delay:g} s"
    elif result == LOST:
        then = " (the lease ran out and another worker claimed it again: its attempt settles it)"
    logger.info("webhook %s: event %s (%s) attempt %d: %s: %s%s", claim.endpoint_id, claim.event_id,
                claim.event_type, claim.attempt, answer.error or f"HTTP {answer.status}", result, then)
    return True


def claim_next(timeout):
    """The next due delivery, claimed for this worker; None if none is due.

    A delivery whose endpoint was deleted or disabled after the event was
    published is failed here rather than sent."""
    while True:
        now = utcnow()
        lease_until = now + dt.timedelta(seconds=timeout + LEASE_MARGIN)
        with database.atomic():
            claimed = fetch_all(_claim_query(now, lease_until))
            if not claimed:
                return None
            (delivery_id, attempt), = claimed
            delivery = (WebhookDelivery
                        .select(WebhookDelivery, WebhookEvent, WebhookEndpoint)
                        .join_from(WebhookDelivery, WebhookEvent)
                        .join_from(WebhookDelivery, WebhookEndpoint)
                        .where(WebhookDelivery.id == delivery_id)
                        .get())
            endpoint, event = delivery.endpoint, delivery.event
            if endpoint.deleted_at is None and endpoint.disabled_at is None:
                return Claim(delivery_id, attempt, event.id, event.type, event.created_at, event.data,
                             endpoint.id, endpoint.url, endpoint.secret)
            fail_pending(endpoint.id, "the webhook was deleted" if endpoint.deleted_at
                         else "the webhook is disabled")


def _claim_query(now, lease_until):
    """UPDATE … RETURNING (id, attempts) of the delivery due first, if any."""
    due = (WebhookDelivery
           .select(WebhookDelivery.id)
           .where((WebhookDelivery.status == WebhookDelivery.PENDING)
                  & (WebhookDelivery.next_attempt_at <= now))
           .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
           .limit(1))
    if isinstance(database.obj, PostgresqlDatabase):
        due = due.for_update(skip_locked=True)  # rows other workers are claiming: pass over, never wait
    return (WebhookDelivery
            .update(attempts=WebhookDelivery.attempts + 1, lease_until=lease_until,
                    next_attempt_at=lease_until)
            .where(WebhookDelivery.id.in_(due))
            .returning(WebhookDelivery.id, WebhookDelivery.attempts))


def next_delay(attempt, retry_after, delays):
    """Seconds from failed attempt number `attempt` (1-based) to the next;
    None when every delay is used. A longer Retry-After wins, up to the
    longest delay."""
    if attempt > len(delays):
        return None
    delay = delays[attempt - 1]
    if retry_after is not None and retry_after > delay:
        delay = min(retry_after, max(delays))
    return delay


def settle(claim, answer, delays):
    """Write the outcome of `claim`'s attempt; (its result, the delay of a retry or None).

    LOST: another worker claimed the row after this claim's lease ran out;
    nothing is written (that worker's attempt settles it)."""
    now = utcnow()
    delay = None
    if answer.succeeded:
        result, changes = DELIVERED, {"status": WebhookDelivery.DELIVERED, "delivered_at": now}
    elif answer.status == 410:
        result, changes = DISABLED, {"status": WebhookDelivery.FAILED}
    else:
        delay = next_delay(claim.attempt, answer.retry_after, delays)
        result, changes = ((FAILED, {"status": WebhookDelivery.FAILED}) if delay is None else
                           (RETRIED, {"next_attempt_at": now + dt.timedelta(seconds=delay)}))
    changes.setdefault("next_attempt_at", None)
    held = ((WebhookDelivery.id == claim.delivery_id) & (WebhookDelivery.attempts == claim.attempt)
            & (WebhookDelivery.status == WebhookDelivery.PENDING))
    with database.atomic():
        if not (WebhookDelivery
                .update(lease_until=None, last_status=answer.status, last_error=answer.error, **changes)
                .where(held)
                .execute()):
            return LOST, None
        if result == DISABLED:
            _disable(claim.endpoint_id, now)
    return result, delay


def _disable(endpoint_id, now):
    """The receiver said 410 Gone: no more deliveries to this endpoint."""
    (WebhookEndpoint
     .update(disabled_at=now)
     .where((WebhookEndpoint.id == endpoint_id) & WebhookEndpoint.disabled_at.is_null())
     .execute())
    fail_pending(endpoint_id, "the webhook is disabled: the receiver answered 410 Gone")
