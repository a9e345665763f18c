"""Webhooks: webhook_endpoint, webhook_event (the outbox) and webhook_delivery.

Workers find due deliveries by (status, next_attempt_at); the deliveries of
one endpoint are listed newest first by (endpoint_id, id). An event reaches
an endpoint at most once: (event_id, endpoint_id) is unique.
"""
import peewee as pw


def migrate(migrator, database, fake=False, **kwargs):
    Tenant = migrator.orm["tenant"]  # as migration 001 made it (peewee-migrate replays history)

    @migrator.create_model
    class WebhookEndpoint(pw.Model):
        id = pw.CharField(max_length=32, primary_key=True)
        url = pw.CharField(max_length=2048)
        secret = pw.CharField(max_length=64, null=True)
        events = pw.TextField(null=True)
        tenant = pw.ForeignKeyField(Tenant, column_name="tenant_id", null=True, index=False)
        created_at = pw.DateTimeField()
        disabled_at = pw.DateTimeField(null=True)
        deleted_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "webhook_endpoint"

    @migrator.create_model
    class WebhookEvent(pw.Model):
        id = pw.CharField(max_length=36, primary_key=True)
        type = pw.CharField(max_length=64)
        tenant_id = pw.CharField(max_length=64)
        data = pw.TextField()
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "webhook_event"

    @migrator.create_model
    class WebhookDelivery(pw.Model):
        id = pw.BigAutoField()
        event = pw.ForeignKeyField(WebhookEvent, column_name="event_id", index=False)
        endpoint = pw.ForeignKeyField(WebhookEndpoint, column_name="endpoint_id", index=False)
        status = pw.CharField(max_length=16,
                              constraints=[pw.Check("status IN ('pending', 'delivered', 'failed')")])
        attempts = pw.IntegerField(default=0)
        next_attempt_at = pw.DateTimeField(null=True)
        lease_until = pw.DateTimeField(null=True)
        last_status = pw.IntegerField(null=True)
        last_error = pw.CharField(max_length=255, null=True)
        delivered_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "webhook_delivery"
            indexes = (
                (("event", "endpoint"), True),
                (("endpoint", "id"), False),
                (("status", "next_attempt_at"), False),
            )


def rollback(migrator, database, fake=False, **kwargs):
    for table in ("webhook_delivery", "webhook_event", "webhook_endpoint"):
        migrator.remove_model(table)
