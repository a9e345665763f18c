"""usage_rollup without hourly cells: windows read raw rows up to whole UTC days.

At 1M calls over 90 days an hourly cell held 1.3 calls on average (752,000
of the 886,000 cells): ingestion wrote about one per call, two fifths of its
cell writes, and reads gained nothing over the raw rows, which now serve a
window's edges up to its first and last whole UTC day (`app/rollups.py`).
The day, month and tenant_month cells are unchanged, so no rebuild is needed.

The grain column's CHECK no longer admits 'hour': PostgreSQL replaces it;
SQLite cannot alter a constraint, so the table is rebuilt under its own name
(SQLite's documented procedure: create, copy, drop, rename, re-index).
`_replace_check` is 006's, copied rather than shared: a migration must keep
doing what it did when it was written, whatever later code becomes.
"""
import peewee as pw

OLD_CHECK = "grain IN ('hour', 'day', 'month', 'tenant_month')"
NEW_CHECK = "grain IN ('day', 'month', 'tenant_month')"


def migrate(migrator, database, fake=False, **kwargs):
    migrator.sql("DELETE FROM usage_rollup WHERE grain = 'hour'")
    _replace_check(migrator, database, fake, OLD_CHECK, NEW_CHECK)


def rollback(migrator, database, fake=False, **kwargs):
    """006's code reads hourly cells, which a rebuild makes again."""
    _replace_check(migrator, database, fake, NEW_CHECK, OLD_CHECK)
    migrator.sql("UPDATE usage_rollup_state SET needs_rebuild = TRUE WHERE EXISTS (SELECT 1 FROM usage_rollup)")


def _replace_check(migrator, database, fake, old, new):
    """The CHECK on grain from (old) to (new)."""
    if isinstance(database, pw.PostgresqlDatabase):
        migrator.sql("ALTER TABLE usage_rollup DROP CONSTRAINT usage_rollup_grain_check,"
                     f" ADD CONSTRAINT usage_rollup_grain_check CHECK ({new})")
        return
    if fake:  # peewee-migrate replays applied migrations with a mock database: nothing to read
        return
    table_sql, = database.execute_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'usage_rollup'").fetchone()
    if old not in table_sql:
        raise RuntimeError(f"usage_rollup has no CHECK ({old}): {table_sql}")
    indexes = [row[0] for row in database.execute_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'usage_rollup' AND sql IS NOT NULL")]
    migrator.sql(table_sql.replace(old, new).replace('"usage_rollup"', '"usage_rollup_new"', 1))
    migrator.sql("INSERT INTO usage_rollup_new SELECT * FROM usage_rollup")
    migrator.sql("DROP TABLE usage_rollup")
    migrator.sql("ALTER TABLE usage_rollup_new RENAME TO usage_rollup")
    for index_sql in indexes:
        migrator.sql(index_sql)
