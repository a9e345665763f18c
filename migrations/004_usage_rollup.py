"""usage_rollup: pre-aggregated cells of llm_call, for statistics whose cost
does not grow with history (`percentiles=approximate`).

A cell is every call of one (tenant, operation, model, status, error_class)
whose timestamp falls in one UTC hour, day or month (`grain`, `cell_start`).
It holds exact counts, sums, minima and maxima and a percentile sketch per
metric (`app/sketch.py`); `app/rollups.py` says how they are kept. The cells
are derived data: `flask --app wsgi rollups rebuild` recomputes them from
llm_call, which this migration does not do (the command shows progress and
can run while the service serves); usage_rollup_state says whether it must.

`error_class` is '' (not NULL) for ok calls so that the unique key matches
them: NULLs are distinct in unique indexes on both engines.
"""
import peewee as pw

METRICS = ("call_duration", "input_tokens", "output_tokens")


def migrate(migrator, database, fake=False, **kwargs):
    @migrator.create_model
    class UsageRollup(pw.Model):
        id = pw.BigAutoField()
        grain = pw.CharField(max_length=5, constraints=[pw.Check("grain IN ('hour', 'day', 'month')")])
        cell_start = pw.DateTimeField()
        tenant_id = pw.CharField(max_length=64)
        operation = pw.CharField(max_length=64)
        model = pw.CharField(max_length=255)
        status = pw.CharField(max_length=8)
        error_class = pw.CharField(max_length=255)
        calls = pw.BigIntegerField()
        cost_micro_usd = pw.BigIntegerField()
        call_duration_sum = pw.BigIntegerField()
        call_duration_min = pw.BigIntegerField()
        call_duration_max = pw.BigIntegerField()
        call_duration_sketch = pw.BlobField()
        input_tokens_sum = pw.BigIntegerField()
        input_tokens_min = pw.BigIntegerField()
        input_tokens_max = pw.BigIntegerField()
        input_tokens_sketch = pw.BlobField()
        output_tokens_sum = pw.BigIntegerField()
        output_tokens_min = pw.BigIntegerField()
        output_tokens_max = pw.BigIntegerField()
        output_tokens_sketch = pw.BlobField()

        class Meta:
            table_name = "usage_rollup"
            indexes = (
                # The cell's identity; also serves every-tenant range scans of a grain.
                (("grain", "cell_start", "tenant_id", "operation", "model", "status", "error_class"), True),
                # One tenant's range scans.
                (("tenant_id", "grain", "cell_start"), False),
            )

    # Calls stored before this migration are in no cell yet: until `rollups
    # rebuild` has run, percentiles=approximate answers 503 saying so.
    @migrator.create_model
    class UsageRollupState(pw.Model):
        needs_rebuild = pw.BooleanField()

        class Meta:
            table_name = "usage_rollup_state"

    migrator.sql("INSERT INTO usage_rollup_state (needs_rebuild)"
                 " SELECT EXISTS (SELECT 1 FROM llm_call)")

    if isinstance(database, pw.PostgresqlDatabase):
        # Room on each page for the new version of an updated cell: an update
        # that changes no indexed column and fits stays on its page (HOT) and
        # writes no index entries.
        migrator.sql("ALTER TABLE usage_rollup SET (fillfactor = 70)")


def rollback(migrator, database, fake=False, **kwargs):
    migrator.remove_model("usage_rollup_state")
    migrator.remove_model("usage_rollup")
