"""usage_rollup cells of grain 'tenant_month': a tenant's month, one cell per status.

All-history statistics of every tenant read a sketch per month cell, and a
month cell per (tenant, operation, model, status, error_class) made that
thousands of sketches at 1M calls: their reading and merging grew with the
number of keys, not of months. A tenant_month cell holds the same month of
one tenant and status with operation, model and error_class '' (all of
them), so percentiles by tenant (or by nobody) read one cell per tenant and
month (`app/rollups.py`).

Existing cells have no tenant_month cells beside them yet: where any cell
exists, `usage_rollup_state.needs_rebuild` is set, and percentiles=approximate
answers 503 naming `flask --app wsgi rollups rebuild` until it has run
(exact answers are unaffected).

The grain column's CHECK lists the grains: PostgreSQL replaces it; SQLite
cannot alter a constraint, so the table is rebuilt under its own name
(SQLite's documented procedure: create, copy, drop, rename, re-index).
"""
import peewee as pw

OLD_CHECK = "grain IN ('hour', 'day', 'month')"
NEW_CHECK = "grain IN ('hour', 'day', 'month', 'tenant_month')"


def migrate(migrator, database, fake=False, **kwargs):
    _replace_check(migrator, database, fake, (5, OLD_CHECK), (12, NEW_CHECK))
    migrator.sql("UPDATE usage_rollup_state SET needs_rebuild = TRUE WHERE EXISTS (SELECT 1 FROM usage_rollup)")


def rollback(migrator, database, fake=False, **kwargs):
    migrator.sql("DELETE FROM usage_rollup WHERE grain = 'tenant_month'")
    _replace_check(migrator, database, fake, (12, NEW_CHECK), (5, OLD_CHECK))


def _replace_check(migrator, database, fake, old_column, new_column):
    """grain from VARCHAR(width) CHECK (old) to VARCHAR(width) CHECK (new), both (width, check)."""
    (old_width, old), (width, new) = old_column, new_column
    if isinstance(database, pw.PostgresqlDatabase):
        migrator.sql(f"ALTER TABLE usage_rollup ALTER COLUMN grain TYPE VARCHAR({width}),"
                     " DROP CONSTRAINT usage_rollup_grain_check,"
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
    migrator.sql(table_sql.replace(old, new).replace(f'"grain" VARCHAR({old_width})', f'"grain" VARCHAR({width})')
                 .replace('"usage_rollup"', '"usage_rollup_new"', 1))
    migrator.sql("INSERT INTO usage_rollup_new SELECT * FROM usage_rollup")
    migrator.sql("DROP TABLE usage_rollup")
    migrator.sql("ALTER TABLE usage_rollup_new RENAME TO usage_rollup")
    for index_sql in indexes:
        migrator.sql(index_sql)
