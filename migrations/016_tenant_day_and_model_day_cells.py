"""usage_rollup cells of grains 'tenant_day' and 'model_day'; tenant_month cells only for sealed months.

A tenant_day cell holds a tenant's UTC day, one per status, keyed as
tenant_month cells are (operation, model and error_class ''): answers by
tenant read one sketch per tenant and day instead of one per (operation,
model, error class). Ingestion writes tenant_day cells where it wrote
tenant_month ones, and a month's tenant_month cells are built with its
month cells when it is sealed.

A model_day cell holds a UTC day of every tenant, one per (model,
status), and in two new columns, `quarters` and `quarter_sketches`, the
same calls per UTC quarter hour (app/quarters.py): series in any zone are
whole days and quarters. The columns are empty ('') in other cells. On
PostgreSQL they are stored out of line uncompressed (STORAGE EXTERNAL):
every batch that adds to a model_day cell rewrites its values (tens of kB),
and compressing them each time doubled a backfill batch's time (85 against
46 ms without model_day cells; 51 ms uncompressed).

Existing cells have no tenant_day and model_day cells beside them yet, and months not sealed
have tenant_month cells: where any cell exists,
`usage_rollup_state.needs_rebuild` is set, and percentiles=approximate
answers 503 naming `flask --app wsgi rollups rebuild` until it has run
(exact answers are unaffected).

The grain column's CHECK lists the grains: PostgreSQL replaces it; SQLite
cannot alter a constraint, so the table is rebuilt under its own name
(SQLite's documented procedure: create, copy, drop, rename, re-index).
`_replace_check` is 007's, copied rather than shared: a migration must keep
doing what it did when it was written, whatever later code becomes.
"""
import peewee as pw

OLD_CHECK = "grain IN ('day', 'month', 'tenant_month')"
NEW_CHECK = "grain IN ('day', 'month', 'tenant_month', 'tenant_day', 'model_day')"
QUARTER_BLOBS = ("quarters", "quarter_sketches")


def migrate(migrator, database, fake=False, **kwargs):
    _replace_check(migrator, database, fake, OLD_CHECK, NEW_CHECK)
    empty = "''::bytea" if isinstance(database, pw.PostgresqlDatabase) else "x''"
    blob = "BYTEA" if isinstance(database, pw.PostgresqlDatabase) else "BLOB"
    for name in QUARTER_BLOBS:
        migrator.sql(f"ALTER TABLE usage_rollup ADD COLUMN {name} {blob} NOT NULL DEFAULT {empty}")
        if isinstance(database, pw.PostgresqlDatabase):  # see the docstring
            migrator.sql(f"ALTER TABLE usage_rollup ALTER COLUMN {name} SET STORAGE EXTERNAL")
    migrator.sql("UPDATE usage_rollup_state SET needs_rebuild = TRUE WHERE EXISTS (SELECT 1 FROM usage_rollup)")


def rollback(migrator, database, fake=False, **kwargs):
    """015's code reads tenant_month cells of months not sealed, which a rebuild makes again."""
    migrator.sql("DELETE FROM usage_rollup WHERE grain IN ('tenant_day', 'model_day')")
    # Before dropping the columns: on SQLite it reads the table's schema now, and its statements run in order.
    _replace_check(migrator, database, fake, NEW_CHECK, OLD_CHECK)
    for name in QUARTER_BLOBS:
        migrator.sql(f"ALTER TABLE usage_rollup DROP COLUMN {name}")
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
