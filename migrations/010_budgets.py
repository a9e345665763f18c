"""Budgets: budget, budget_spend (the spend counters ingestion keeps) and budget_alert.

budget_alert's primary key is what makes a threshold fire once per budget,
revision and period, whatever the concurrency (app/budgets/alerts.py).
"""
import peewee as pw


def migrate(migrator, database, fake=False, **kwargs):
    Tenant = migrator.orm["tenant"]  # as migration 001 made it (peewee-migrate replays history)

    @migrator.create_model
    class Budget(pw.Model):
        id = pw.BigAutoField()
        tenant = pw.ForeignKeyField(Tenant, column_name="tenant_id", on_delete="CASCADE")
        name = pw.CharField(max_length=255)
        amount_micro_usd = pw.BigIntegerField(constraints=[pw.Check("amount_micro_usd > 0")])
        period = pw.CharField(max_length=8, constraints=[pw.Check("period IN ('day', 'week', 'month')")])
        tz = pw.CharField(max_length=64)
        thresholds = pw.CharField(max_length=255)
        enforce = pw.BooleanField(default=False)
        model = pw.CharField(max_length=255, null=True)
        operation = pw.CharField(max_length=64, null=True)
        revision = pw.IntegerField(default=1)
        created_at = pw.DateTimeField()
        updated_at = pw.DateTimeField()

        class Meta:
            table_name = "budget"

    @migrator.create_model
    class BudgetSpend(pw.Model):
        budget_id = pw.BigIntegerField()
        revision = pw.IntegerField()
        period_start = pw.DateTimeField()
        spent_micro_usd = pw.BigIntegerField()
        initialized = pw.BooleanField()

        class Meta:
            table_name = "budget_spend"
            primary_key = pw.CompositeKey("budget_id", "revision", "period_start")

    @migrator.create_model
    class BudgetAlert(pw.Model):
        budget_id = pw.BigIntegerField()
        revision = pw.IntegerField()
        period_start = pw.DateTimeField()
        threshold = pw.CharField(max_length=16)
        fired_at = pw.DateTimeField()

        class Meta:
            table_name = "budget_alert"
            primary_key = pw.CompositeKey("budget_id", "revision", "period_start", "threshold")


def rollback(migrator, database, fake=False, **kwargs):
    for table in ("budget_alert", "budget_spend", "budget"):
        migrator.remove_model(table)
