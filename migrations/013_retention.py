"""Retention and erasure: the retention_state row, and tenant.erasing_since.

retention_state holds one row: `horizon`, the instant `calls prune` last
deleted raw calls up to (excluded), and `pruned_from`, the earliest
timestamp of a call it ever deleted (both NULL until a prune deletes
something). Statistics needing raw calls in [pruned_from, horizon) answer 409
(app/retention.py): every worker reads it from here, none keeps it in memory.

tenant.erasing_since marks a tenant whose erasure has begun (app/erasure.py):
from then on it is unknown to the API and to ingestion, and rerunning the
erasure continues it.

Independent of 012 (whatever it holds): neither touches the other's objects.
"""
import peewee as pw


def migrate(migrator, database, fake=False, **kwargs):
    timestamp = "TIMESTAMP" if isinstance(database, pw.PostgresqlDatabase) else "DATETIME"

    @migrator.create_model
    class RetentionState(pw.Model):
        horizon = pw.DateTimeField(null=True)
        pruned_from = pw.DateTimeField(null=True)

        class Meta:
            table_name = "retention_state"

    migrator.sql("INSERT INTO retention_state (horizon, pruned_from) VALUES (NULL, NULL)")
    migrator.sql(f"ALTER TABLE tenant ADD COLUMN erasing_since {timestamp}")


def rollback(migrator, database, fake=False, **kwargs):
    migrator.sql("ALTER TABLE tenant DROP COLUMN erasing_since")
    migrator.remove_model("retention_state")
