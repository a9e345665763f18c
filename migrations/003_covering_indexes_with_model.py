"""Add model and error_class to the two covering window-scan indexes.

Statistics now group by (operation, model) for `by_model`, and series group
by any of operation, model, status and error_class: with those columns in
the index the scans still read the index alone (an index-only scan on
PostgreSQL), instead of fetching every row of the window from the table.
The leading columns are unchanged, so the same lookups are served.
"""

STATS_COLUMNS = "status, operation, call_duration_ms, input_tokens, output_tokens, cost_micro_usd"
WIDER = "status, operation, model, error_class, call_duration_ms, input_tokens, output_tokens, cost_micro_usd"


def _rebuild(migrator, columns):
    migrator.sql("DROP INDEX llm_call_tenant_time_stats")
    migrator.sql("DROP INDEX llm_call_time_stats")
    migrator.sql(f"CREATE INDEX llm_call_tenant_time_stats ON llm_call (tenant_id, timestamp, {columns})")
    migrator.sql(f"CREATE INDEX llm_call_time_stats ON llm_call (timestamp, tenant_id, {columns})")


def migrate(migrator, database, fake=False, **kwargs):
    _rebuild(migrator, WIDER)


def rollback(migrator, database, fake=False, **kwargs):
    _rebuild(migrator, STATS_COLUMNS)
