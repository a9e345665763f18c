"""Webhooks: events the service POSTs to receivers, signed as Standard Webhooks.

- `outbox`: `publish(event_type, tenant_id, data)`, called inside the
  transaction that caused the event, and the event types;
- `endpoints`: the service layer of the endpoints (create, list, delete,
  their deliveries), behind the CLI and /v1/webhooks;
- `delivery`: claiming due deliveries, the retry schedule, the outcomes;
- `sending`: one signed POST with a deadline;
- `settings`: WEBHOOK_RETRY_DELAYS and WEBHOOK_TIMEOUT;
- `commands`: `flask --app wsgi webhooks create|list|delete|deliver`.

Delivery is at least once: an event is written with the calls that caused
it, and a worker that dies mid-attempt leaves a lease that expires, after
which another worker sends it again. A receiver may therefore see one event
twice, always with the same `webhook-id`, and de-duplicates by it.
"""
