"""Initial schema: tenant, api_key, llm_call and the indexes the statistics need.

Models are frozen here (not imported from `app.models`) so later model
changes cannot rewrite history.
"""
import peewee as pw


def migrate(migrator, database, fake=False, **kwargs):
    @migrator.create_model
    class Tenant(pw.Model):
        tenant_id = pw.CharField(max_length=64, primary_key=True)
        name = pw.CharField(max_length=255)
        allows_superusers = pw.BooleanField(default=False)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "tenant"

    @migrator.create_model
    class ApiKey(pw.Model):
        key_id = pw.CharField(max_length=32, primary_key=True)
        tenant = pw.ForeignKeyField(Tenant, column_name="tenant_id", on_delete="CASCADE")
        name = pw.CharField(max_length=255)
        is_superuser = pw.BooleanField(default=False)
        secret_sha256 = pw.CharField(max_length=64)
        created_at = pw.DateTimeField()
        revoked_at = pw.DateTimeField(null=True)
        last_used_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "api_key"

    @migrator.create_model
    class LlmCall(pw.Model):
        id = pw.BigAutoField()
        call_id = pw.UUIDField()
        tenant = pw.ForeignKeyField(Tenant, column_name="tenant_id", index=False)
        operation = pw.CharField(max_length=64)
        timestamp = pw.DateTimeField()
        call_duration_ms = pw.IntegerField(constraints=[pw.Check("call_duration_ms >= 0")])
        model = pw.CharField(max_length=255)
        input_tokens = pw.IntegerField(constraints=[pw.Check("input_tokens >= 0")])
        output_tokens = pw.IntegerField(constraints=[pw.Check("output_tokens >= 0")])
        cost_micro_usd = pw.BigIntegerField(constraints=[pw.Check("cost_micro_usd >= 0")])
        status = pw.CharField(max_length=8, constraints=[pw.Check("status IN ('ok', 'error')")])
        error_class = pw.CharField(max_length=255, null=True)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "llm_call"
            constraints = [
                pw.SQL(
                    "CHECK ((status = 'error' AND error_class IS NOT NULL)"
                    " OR (status = 'ok' AND error_class IS NULL))"
                )
            ]
            indexes = (
                # Idempotency key; also serves per-tenant lookups.
                (("tenant", "call_id"), True),
                # Per-tenant window scans (/v1/usage).
                (("tenant", "timestamp"), False),
                # Whole-service window scans (/v1/usage/all).
                (("timestamp",), False),
            )


def rollback(migrator, database, fake=False, **kwargs):
    migrator.remove_model("llm_call")
    migrator.remove_model("api_key")
    migrator.remove_model("tenant")
