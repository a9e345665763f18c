"""usage_rollup cells of grains 'day@<zone>': a tenant's local days in the zones ROLLUP_ZONES names.

A `day@Europe/Berlin` cell holds a tenant's calls of one local day there,
one per status, keyed as tenant_day cells are (app/local_days.py). The
grain column widens to 64 characters (on PostgreSQL a change of its
declared length only: no row is rewritten) and its CHECK admits these
grains. `usage_rollup_state.zone_cells` ({zone: the first instant its cells
are whole from}, JSON) says which zones' cells are ready to be read: none
until `flask --app wsgi rollups rebuild` builds them.

The grain column's CHECK lists the grains: PostgreSQL replaces it; SQLite
cannot alter a constraint, so the table is rebuilt under its own name
(SQLite's documented procedure: create, copy, drop, rename, re-index).
`_replace_check` is 016's, copied rather than shared: a migration must keep
doing what it did when it was written, whatever later code becomes.
"""
import peewee as pw

OLD_CHECK = "grain IN ('day', 'month', 'tenant_month', 'tenant_day', 'model_day')"
NEW_CHECK = "grain IN ('day', 'month', 'tenant_month', 'tenant_day', 'model_day') OR substr(grain, 1, 4) = 'day@'"


def migrate(migrator, database, fake=False, **kwargs):
    if isinstance(database, pw.PostgresqlDatabase):
        migrator.sql("ALTER TABLE usage_rollup ALTER COLUMN grain TYPE VARCHAR(64)")
    _replace_check(migrator, database, fake, OLD_CHECK, NEW_CHECK)
    migrator.sql("ALTER TABLE usage_rollup_state ADD COLUMN zone_cells TEXT NOT NULL DEFAULT '{}'")


def rollback(migrator, database, fake=False, **kwargs):
    migrator.sql("DELETE FROM usage_rollup WHERE substr(grain, 1, 4) = 'day@'")
    _replace_check(migrator, database, fake, NEW_CHECK, OLD_CHECK)
    if isinstance(database, pw.PostgresqlDatabase):
        migrator.sql("ALTER TABLE usage_rollup ALTER COLUMN grain TYPE VARCHAR(12)")
    migrator.sql("ALTER TABLE usage_rollup_state DROP COLUMN zone_cells")


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
