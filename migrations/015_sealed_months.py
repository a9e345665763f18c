"""Sealed months: usage_rollup_state.sealed_before.

Month cells (grain 'month') exist for every month before `sealed_before`, a
UTC month start; the months from it on have day cells only, and their
month cells are built from those when a month ends (app/rollups.py,
"Sealed months"). NULL, as this migration leaves it: every month has its
month cells, as ingestion kept them until now; the first batch stored
after it seals what is due (app/repository/rollups/seal.py).
"""
import peewee as pw


def migrate(migrator, database, fake=False, **kwargs):
    timestamp = "TIMESTAMP" if isinstance(database, pw.PostgresqlDatabase) else "DATETIME"
    migrator.sql(f"ALTER TABLE usage_rollup_state ADD COLUMN sealed_before {timestamp}")


def rollback(migrator, database, fake=False, **kwargs):
    migrator.sql("ALTER TABLE usage_rollup_state DROP COLUMN sealed_before")
