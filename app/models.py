"""Peewee models of the tables. The schema itself is created by the
migrations in `migrations/`, never by `create_tables`.

Two storage decisions make both engines give the same, exact answers:

- timestamps are stored as naive UTC (`UtcDateTimeField` converts at the
  boundary), so SQLite's text timestamps sort like PostgreSQL's;
- money is stored as an integer number of micro-dollars (`cost_micro_usd`),
  so sums are exact integers on both engines (SQLite has no exact decimal type).
"""
import datetime as dt
from decimal import Decimal

from peewee import (
    BigAutoField,
    BigIntegerField,
    BlobField,
    BooleanField,
    CharField,
    CompositeKey,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
    UUIDField,
)

from .db import database

MICROS_PER_USD = 1_000_000


def utcnow():
    return dt.datetime.now(dt.timezone.utc)


def usd_to_micros(amount: Decimal) -> int:
    """Exact: callers validated that `amount` has at most 6 decimal places."""
    return int(amount * MICROS_PER_USD)


def micros_to_usd(micros) -> Decimal:
    return (Decimal(int(micros or 0)) / MICROS_PER_USD).quantize(Decimal("0.000001"))


class UtcDateTimeField(DateTimeField):
    """Aware UTC datetimes in Python, naive UTC in the database."""

    def db_value(self, value):
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return super().db_value(value)

    def python_value(self, value):
        value = super().python_value(value)
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                return value.replace(tzinfo=dt.timezone.utc)
            return value.astimezone(dt.timezone.utc)
        return value


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False


class Tenant(BaseModel):
    tenant_id = CharField(max_length=64, primary_key=True)
    name = CharField(max_length=255)
    allows_superusers = BooleanField(default=False)
    created_at = UtcDateTimeField(default=utcnow)
    # Set when its erasure begins (app/erasure.py): from then on the tenant is unknown.
    erasing_since = UtcDateTimeField(null=True)


class ApiKey(BaseModel):
    key_id = CharField(max_length=32, primary_key=True)
    tenant = ForeignKeyField(Tenant, column_name="tenant_id", backref="keys")
    name = CharField(max_length=255)
    is_superuser = BooleanField(default=False)  # may reach every tenant (app/scopes.py)
    scopes_text = CharField(max_length=255, column_name="scopes")  # app/scopes.py stored()
    secret_sha256 = CharField(max_length=64)
    created_at = UtcDateTimeField(default=utcnow)
    expires_at = UtcDateTimeField(null=True)
    revoked_at = UtcDateTimeField(null=True)
    last_used_at = UtcDateTimeField(null=True)
    replaced_by = CharField(max_length=32, null=True)  # the key a rotation made

    @property
    def scopes(self):
        return self.scopes_text.split()

    def expired(self, now):
        return self.expires_at is not None and self.expires_at <= now


class AuditEvent(BaseModel):
    """One administrative action (app/audit.py)."""

    id = BigAutoField()
    at = UtcDateTimeField()
    actor = CharField(max_length=32)  # a key id, or 'cli'
    request_id = CharField(max_length=128, null=True)
    action = CharField(max_length=64)
    target = CharField(max_length=255)
    details = TextField()  # a JSON object

    class Meta:
        table_name = "audit_event"


class LlmCall(BaseModel):
    id = BigAutoField()
    call_id = UUIDField()
    tenant = ForeignKeyField(Tenant, column_name="tenant_id", backref="calls")
    operation = CharField(max_length=64)
    timestamp = UtcDateTimeField()
    call_duration_ms = IntegerField()
    model = CharField(max_length=255)
    input_tokens = IntegerField()
    output_tokens = IntegerField()
    cost_micro_usd = BigIntegerField()
    status = CharField(max_length=8)
    error_class = CharField(max_length=255, null=True)
    created_at = UtcDateTimeField(default=utcnow)

    class Meta:
        table_name = "llm_call"


class UsageRollup(BaseModel):
    """A cell of pre-aggregated calls (migrations/004_usage_rollup.py, app/rollups.py)."""

    id = BigAutoField()
    grain = CharField(max_length=64)  # app/rollups.py CELL_GRAINS, and day@<zone> (app/local_days.py)
    cell_start = UtcDateTimeField()
    tenant_id = CharField(max_length=64)
    operation = CharField(max_length=64)
    model = CharField(max_length=255)
    status = CharField(max_length=8)
    error_class = CharField(max_length=255)  # '' for ok calls
    calls = BigIntegerField()
    cost_micro_usd = BigIntegerField()
    call_duration_sum = BigIntegerField()
    call_duration_min = BigIntegerField()
    call_duration_max = BigIntegerField()
    call_duration_sketch = BlobField()
    input_tokens_sum = BigIntegerField()
    input_tokens_min = BigIntegerField()
    input_tokens_max = BigIntegerField()
    input_tokens_sketch = BlobField()
    output_tokens_sum = BigIntegerField()
    output_tokens_min = BigIntegerField()
    output_tokens_max = BigIntegerField()
    output_tokens_sketch = BlobField()
    tail_numbers = BlobField(default=b"")  # day and failed_day cells' tails of named zones' days (migration 020)
    quarters = BlobField(default=b"")  # model_day cells' quarter hours (migration 016, app/quarters.py)
    quarter_sketches = BlobField(default=b"")
    tail_sketches = BlobField(default=b"")  # model_day cells' tails of named zones' days (migration 019)
    sketch_pieces = IntegerField(default=1)  # appended, not yet merged (migration 005)

    class Meta:
        table_name = "usage_rollup"


class UsageRollupState(BaseModel):
    """One row: whether calls are stored that no cell holds yet (see migration
    004), the first month without month cells (NULL: none; migration 015),
    and the zones whose day cells are ready (JSON; migration 017, app/local_days.py)."""

    needs_rebuild = BooleanField()
    sealed_before = UtcDateTimeField(null=True)
    zone_cells = TextField(default="{}")

    class Meta:
        table_name = "usage_rollup_state"


class RetentionState(BaseModel):
    """One row: raw calls in [pruned_from, horizon) were pruned (app/retention.py)."""

    horizon = UtcDateTimeField(null=True)
    pruned_from = UtcDateTimeField(null=True)

    class Meta:
        table_name = "retention_state"


class Budget(BaseModel):
    """A tenant's spending limit per calendar period (app/budgets/)."""

    id = BigAutoField()
    tenant = ForeignKeyField(Tenant, column_name="tenant_id", backref="budgets")
    name = CharField(max_length=255)
    amount_micro_usd = BigIntegerField()
    period = CharField(max_length=8)  # day, week or month
    tz = CharField(max_length=64)
    thresholds_text = CharField(max_length=255, column_name="thresholds")  # JSON list of decimal strings
    enforce = BooleanField(default=False)
    model = CharField(max_length=255, null=True)
    operation = CharField(max_length=64, null=True)
    # Changed with the amount, thresholds or filters: its alerts and spend counters start anew.
    revision = IntegerField(default=1)
    created_at = UtcDateTimeField(default=utcnow)
    updated_at = UtcDateTimeField(default=utcnow)

    class Meta:
        table_name = "budget"


class BudgetSpend(BaseModel):
    """The spend of a budget's period, kept by ingestion (app/budgets/alerts.py)."""

    budget_id = BigIntegerField()
    revision = IntegerField()
    period_start = UtcDateTimeField()
    spent_micro_usd = BigIntegerField()
    initialized = BooleanField()  # false only inside the transaction that created the row

    class Meta:
        table_name = "budget_spend"
        primary_key = CompositeKey("budget_id", "revision", "period_start")


class BudgetAlert(BaseModel):
    """A threshold that fired: at most one per budget, revision, period and threshold."""

    budget_id = BigIntegerField()
    revision = IntegerField()
    period_start = UtcDateTimeField()
    threshold = CharField(max_length=16)  # a decimal string, as in Budget.thresholds
    fired_at = UtcDateTimeField(default=utcnow)

    class Meta:
        table_name = "budget_alert"
        primary_key = CompositeKey("budget_id", "revision", "period_start", "threshold")


def page_of(query, page, page_size):
    """(the rows of 1-based `page` of `query`, the total count)."""
    total = query.count()
    if (page - 1) * page_size >= total:
        return [], total  # past the end; also keeps huge page numbers out of SQL
    return list(query.paginate(page, page_size)), total


class WebhookEndpoint(BaseModel):
    """A receiver of events (app/webhooks/): deleted ones stay, marked, so no
    delivery row ever loses the endpoint it points to."""

    id = CharField(max_length=32, primary_key=True)  # wh_<16 hex digits>
    url = CharField(max_length=2048)
    # whsec_<base64>, stored as given: every delivery is signed with it (a digest
    # could not sign). Cleared when the endpoint is deleted.
    secret = CharField(max_length=64, null=True)
    events_text = TextField(null=True, column_name="events")  # space-separated types; null: every type
    tenant = ForeignKeyField(Tenant, column_name="tenant_id", null=True, index=False)  # null: every tenant
    created_at = UtcDateTimeField(default=utcnow)
    disabled_at = UtcDateTimeField(null=True)  # the receiver answered 410 Gone
    deleted_at = UtcDateTimeField(null=True)

    class Meta:
        table_name = "webhook_endpoint"

    @property
    def events(self):
        return None if self.events_text is None else self.events_text.split()


class WebhookEvent(BaseModel):
    """Something that happened, written in the transaction that caused it (the outbox)."""

    id = CharField(max_length=36, primary_key=True)  # evt_<32 hex digits>: the webhook-id header
    type = CharField(max_length=64)
    tenant_id = CharField(max_length=64)
    data = TextField()  # a JSON object
    created_at = UtcDateTimeField(default=utcnow)

    class Meta:
        table_name = "webhook_event"


class WebhookDelivery(BaseModel):
    """One event for one endpoint, and how sending it went (app/webhooks/delivery.py)."""

    PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"  # the statuses

    id = BigAutoField()
    event = ForeignKeyField(WebhookEvent, column_name="event_id", index=False)
    endpoint = ForeignKeyField(WebhookEndpoint, column_name="endpoint_id", index=False)
    status = CharField(max_length=16)
    attempts = IntegerField(default=0)  # claims so far; a claim's count is its fencing token
    # When a pending one is due (a claimed one: when its lease ends); null once settled.
    next_attempt_at = UtcDateTimeField(null=True)
    lease_until = UtcDateTimeField(null=True)  # a worker holds it until then
    last_status = IntegerField(null=True)  # the receiver's last HTTP status
    last_error = CharField(max_length=255, null=True)
    delivered_at = UtcDateTimeField(null=True)

    class Meta:
        table_name = "webhook_delivery"
