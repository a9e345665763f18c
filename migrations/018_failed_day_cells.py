"""usage_rollup cells of grain 'failed_day': a UTC day's failed calls of one (tenant, operation, model).

A failed_day cell adds up the day cells of one (tenant, operation, model)
with status 'error', every error class together (status 'error',
error_class ''), their numbers only: their sketches are empty, as
percentiles are over ok calls (app/rollups.py, FAILED_DAY). Answers keyed
and filtered by no error class read them beside the day cells of ok calls
instead of a day cell per error class.

The migration builds them from the stored day cells, pruned days included,
in its transaction: no rebuild is needed. Stop every worker that stores
calls before it runs (older code would store batches without their
failed_day cells; `rollups verify` reports such cells as missing, `rollups
rebuild` adds them), and start the new code after it.

The grain column's CHECK lists the grains: PostgreSQL replaces it; SQLite
cannot alter a constraint, so the table is rebuilt under its own name
(SQLite's documented procedure: create, copy, drop, rename, re-index).
`_replace_check` is 017's, copied rather than shared: a migration must keep
doing what it did when it was written, whatever later code becomes.
"""
import peewee as pw

OLD_CHECK = "grain IN ('day', 'month', 'tenant_month', 'tenant_day', 'model_day') OR substr(grain, 1, 4) = 'day@'"
NEW_CHECK = ("grain IN ('day', 'month', 'tenant_month', 'tenant_day', 'model_day', 'failed_day')"
             " OR substr(grain, 1, 4) = 'day@'")
METRICS = ("call_duration", "input_tokens", "output_tokens")
BLOBS = tuple(f"{metric}_sketch" for metric in METRICS) + ("quarters", "quarter_sketches")


def migrate(migrator, database, fake=False, **kwargs):
    _replace_check(migrator, database, fake, OLD_CHECK, NEW_CHECK)
    empty = "''::bytea" if isinstance(database, pw.PostgresqlDatabase) else "x''"
    columns = ["grain", "cell_start", "tenant_id", "operation", "model", "status", "error_class", "calls",
               "cost_micro_usd"]
    values = ["'failed_day'", "cell_start", "tenant_id", "operation", "model", "'error'", "''", "SUM(calls)",
              "SUM(cost_micro_usd)"]
    for metric in METRICS:
        columns += [f"{metric}_sum", f"{metric}_min", f"{metric}_max"]
        values += [f"SUM({metric}_sum)", f"MIN({metric}_min)", f"MAX({metric}_max)"]
    columns += [*BLOBS, "sketch_pieces"]
    values += [empty] * len(BLOBS) + ["1"]
    migrator.sql(f"INSERT INTO usage_rollup ({', '.join(columns)}) SELECT {', '.join(values)} FROM usage_rollup"
                 " WHERE grain = 'day' AND status = 'error' GROUP BY cell_start, tenant_id, operation, model")


def rollback(migrator, database, fake=False, **kwargs):
    migrator.sql("DELETE FROM usage_rollup WHERE grain = 'failed_day'")
    _replace_check(migrator, database, fake, NEW_CHECK, OLD_CHECK)


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
