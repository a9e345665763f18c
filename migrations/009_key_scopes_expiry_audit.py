"""Least privilege: api_key.scopes, expires_at and replaced_by; the audit_event table.

Existing keys get the scopes that match what they could do before scopes
existed (app/scopes.py): superuser keys all four, tenant keys `usage:read`
and `calls:write`. So nothing changes for them on upgrade. Nothing expires.

The audit log is read newest first by its id (the primary key), so it
needs no other index.
"""
import peewee as pw

SUPERUSER_SCOPES = "usage:read calls:write all:read admin"
TENANT_SCOPES = "usage:read calls:write"


def migrate(migrator, database, fake=False, **kwargs):
    timestamp = "TIMESTAMP" if isinstance(database, pw.PostgresqlDatabase) else "DATETIME"
    migrator.sql("ALTER TABLE api_key ADD COLUMN scopes VARCHAR(255) NOT NULL DEFAULT ''")
    migrator.sql(f"ALTER TABLE api_key ADD COLUMN expires_at {timestamp}")
    migrator.sql("ALTER TABLE api_key ADD COLUMN replaced_by VARCHAR(32)")
    migrator.sql(f"UPDATE api_key SET scopes = CASE WHEN is_superuser THEN '{SUPERUSER_SCOPES}' "
                 f"ELSE '{TENANT_SCOPES}' END")

    @migrator.create_model
    class AuditEvent(pw.Model):
        id = pw.BigAutoField()
        at = pw.DateTimeField()
        actor = pw.CharField(max_length=32)
        request_id = pw.CharField(max_length=128, null=True)
        action = pw.CharField(max_length=64)
        target = pw.CharField(max_length=255)
        details = pw.TextField()

        class Meta:
            table_name = "audit_event"


def rollback(migrator, database, fake=False, **kwargs):
    migrator.remove_model("audit_event")
    for column in ("replaced_by", "expires_at", "scopes"):
        migrator.sql(f"ALTER TABLE api_key DROP COLUMN {column}")
