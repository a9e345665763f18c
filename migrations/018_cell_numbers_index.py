"""PostgreSQL: an index holding every cell's numbers, for index-only scans of cell totals.

`approximate` adds up the numbers of many cells (/v1/usage/all over 30 days
at 1M calls: 42,600 day cells, 72,000 at 10M). Read from the table, whose
rows also hold the sketches, PostgreSQL scanned all of usage_rollup for
them (66 ms at 1M; 105 ms at 10M, the table 4 times larger); from this
index, by (grain, cell_start), it reads the entries of those cells alone
(29 ms at 1M). Sketches are still read from the table.

PostgreSQL only: SQLite's ingestion, which updates every cell it adds to,
is at its 0.5x-the-raw-insert line already (docs/rollups-in-every-zone.md)
and would maintain the index on each update.
"""
import peewee as pw

NUMBERS = ("calls, cost_micro_usd, call_duration_sum, call_duration_min, call_duration_max, input_tokens_sum, "
           "input_tokens_min, input_tokens_max, output_tokens_sum, output_tokens_min, output_tokens_max")


def migrate(migrator, database, fake=False, **kwargs):
    if isinstance(database, pw.PostgresqlDatabase):
        migrator.sql("CREATE INDEX usage_rollup_cell_numbers ON usage_rollup (grain, cell_start) "
                     f"INCLUDE (tenant_id, operation, model, status, error_class, {NUMBERS})")


def rollback(migrator, database, fake=False, **kwargs):
    if isinstance(database, pw.PostgresqlDatabase):
        migrator.sql("DROP INDEX usage_rollup_cell_numbers")
