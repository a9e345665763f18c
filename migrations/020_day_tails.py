"""usage_rollup.tail_numbers: day and failed_day cells' numbers of their day from each named zone's local midnight on.

`/v1/usage/all` over the last 30 days in a zone such as Asia/Kolkata read
the raw calls of its first part-day (18:30 to 24:00 UTC), which grow with
the history; these tails give them from one day's cells (app/day_tails.py).
Empty ('') in other cells.

The cells stored before hold no tails, and a tail is read only where the
zone's cells are ready (app/local_days.py): so this takes every zone out of
the ready ones. Until `flask --app wsgi rollups rebuild` runs, answers in
those zones read raw calls where they read the zones' cells, as with a zone
just named: the same numbers, slower. Small: stored inline (the default).
"""
import peewee as pw


def migrate(migrator, database, fake=False, **kwargs):
    empty, blob = ("''::bytea", "BYTEA") if isinstance(database, pw.PostgresqlDatabase) else ("x''", "BLOB")
    migrator.sql(f"ALTER TABLE usage_rollup ADD COLUMN tail_numbers {blob} NOT NULL DEFAULT {empty}")
    migrator.sql("UPDATE usage_rollup_state SET zone_cells = '{}'")


def rollback(migrator, database, fake=False, **kwargs):
    migrator.sql("ALTER TABLE usage_rollup DROP COLUMN tail_numbers")
