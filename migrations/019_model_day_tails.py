"""usage_rollup.tail_sketches: a model_day cell's sketches of its day from each named zone's local midnight on.

A local day of a zone ROLLUP_ZONES names is, in model_day cells, the tail
of one UTC day and the rest of the next (app/quarters.py): its sketches
are then a day sketch and two tails, where summing quarter hours read the
pairs of every quarter in between (30 local days by model in
Asia/Kathmandu at 10M calls: 22 MB read, 130 ms). Empty ('') in other
cells, and in the model_day cells stored before: a tail is used only where
its counts show it holds every call of its quarters, so no rebuild is
needed; until one runs (`flask --app wsgi rollups rebuild`), the days
stored before are read from their quarter hours as before. Stored out of
line uncompressed on PostgreSQL, as the quarter hours are (migration 016).
"""
import peewee as pw


def migrate(migrator, database, fake=False, **kwargs):
    postgres = isinstance(database, pw.PostgresqlDatabase)
    empty, blob = ("''::bytea", "BYTEA") if postgres else ("x''", "BLOB")
    migrator.sql(f"ALTER TABLE usage_rollup ADD COLUMN tail_sketches {blob} NOT NULL DEFAULT {empty}")
    if postgres:
        migrator.sql("ALTER TABLE usage_rollup ALTER COLUMN tail_sketches SET STORAGE EXTERNAL")


def rollback(migrator, database, fake=False, **kwargs):
    migrator.sql("ALTER TABLE usage_rollup DROP COLUMN tail_sketches")
