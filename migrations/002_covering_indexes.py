"""Make the two window-scan indexes covering for the statistics queries.

Measured on 1M calls in SQLite: the 30-day all-tenant statistics read the
table through (tenant_id, timestamp) one row at a time; with every column the
statistics need in the index they read the index alone (about 2x faster).
The leading columns are unchanged, so the same lookups are served.
"""

STATS_COLUMNS = "status, operation, call_duration_ms, input_tokens, output_tokens, cost_micro_usd"


def migrate(migrator, database, fake=False, **kwargs):
    migrator.sql("DROP INDEX llmcall_tenant_id_timestamp")
    migrator.sql("DROP INDEX llmcall_timestamp")
    migrator.sql(f"CREATE INDEX llm_call_tenant_time_stats ON llm_call (tenant_id, timestamp, {STATS_COLUMNS})")
    migrator.sql(f"CREATE INDEX llm_call_time_stats ON llm_call (timestamp, tenant_id, {STATS_COLUMNS})")


def rollback(migrator, database, fake=False, **kwargs):
    migrator.sql("DROP INDEX llm_call_tenant_time_stats")
    migrator.sql("DROP INDEX llm_call_time_stats")
    migrator.sql('CREATE INDEX llmcall_tenant_id_timestamp ON llm_call (tenant_id, timestamp)')
    migrator.sql('CREATE INDEX llmcall_timestamp ON llm_call (timestamp)')
