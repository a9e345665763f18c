"""SQL of erasing a tenant: every row that names it. The steps, their order
and why: app/erasure.py."""
from peewee import SQL, Select, fn

from .. import local_days
from ..db import database
from ..models import ApiKey, Budget, LlmCall, Tenant, UsageRollup, WebhookDelivery, WebhookEndpoint, WebhookEvent
from ..rollups import CELL_GRAINS, MODEL_DAY
from ..webhooks.endpoints import fail_pending
from . import spend
from .deletes import KeysetDelete


def find(tenant_id):
    """The tenant, being erased or not; None if there is none."""
    return Tenant.get_or_none(Tenant.tenant_id == tenant_id)


def being_erased():
    """The ids of the tenants whose erasure has begun, by id."""
    query = Tenant.select(Tenant.tenant_id).where(Tenant.erasing_since.is_null(False)).order_by(Tenant.tenant_id)
    return [tenant_id for (tenant_id,) in query.tuples()]


def tally(tenant_id):
    """{what: how many} the tenant holds: calls, cells, keys, budgets,
    webhooks (endpoints). One statement."""
    counts = [model.select(fn.COUNT(SQL("*"))).where(where) for model, where in (
        (LlmCall, LlmCall.tenant == tenant_id), (UsageRollup, UsageRollup.tenant_id == tenant_id),
        (ApiKey, ApiKey.tenant == tenant_id), (Budget, Budget.tenant == tenant_id),
        (WebhookEndpoint, WebhookEndpoint.tenant == tenant_id))]
    row = database.execute(Select(columns=counts).bind(database)).fetchone()
    return dict(zip(("calls", "cells", "keys", "budgets", "webhooks"), row))


def mark(tenant_id, now):
    """Mark the tenant as being erased, revoke its live keys, and delete its
    webhook endpoints as `webhooks delete` does (their pending deliveries
    fail); inside the caller's transaction. False if it was marked already."""
    marked = (Tenant.update(erasing_since=now)
              .where((Tenant.tenant_id == tenant_id) & Tenant.erasing_since.is_null()).execute())
    if not marked:
        return False
    ApiKey.update(revoked_at=now).where((ApiKey.tenant == tenant_id) & ApiKey.revoked_at.is_null()).execute()
    endpoints = [endpoint_id for (endpoint_id,) in WebhookEndpoint.select(WebhookEndpoint.id).where(
        (WebhookEndpoint.tenant == tenant_id) & WebhookEndpoint.deleted_at.is_null()).tuples()]
    if endpoints:
        WebhookEndpoint.update(deleted_at=now, secret=None).where(WebhookEndpoint.id.in_(endpoints)).execute()
        for endpoint_id in endpoints:
            fail_pending(endpoint_id, "the webhook's tenant was erased")
    return True


def calls_deleter(tenant_id):
    """A KeysetDelete of the tenant's calls, oldest first (index (tenant_id, timestamp, ...))."""
    return KeysetDelete(LlmCall, LlmCall.tenant == tenant_id, LlmCall.timestamp)


def days_of(tenant_id):
    """The UTC days holding the tenant's day cells, oldest first."""
    query = (UsageRollup.select(UsageRollup.cell_start).distinct()
             .where((UsageRollup.tenant_id == tenant_id) & (UsageRollup.grain == "day"))
             .order_by(UsageRollup.cell_start).tuples())
    return [UsageRollup.cell_start.python_value(start) for (start,) in query]


def cells_deleters(tenant_id):
    """A KeysetDelete of the tenant's cells per grain, by start (index (tenant_id, grain, cell_start)),
    the named zones' day cells included (`remove_rest` deletes any other's); model_day cells hold no
    tenant's alone (`days_of`)."""
    grains = [grain for grain in CELL_GRAINS if grain != MODEL_DAY] + list(map(local_days.grain_of, local_days.named()))
    return [KeysetDelete(UsageRollup, (UsageRollup.tenant_id == tenant_id) & (UsageRollup.grain == grain),
                         UsageRollup.cell_start) for grain in grains]


def remove_rest(tenant_id):
    """Inside the caller's transaction, once batches in flight are waited for: delete
    what is left of the tenant, the tenant row last. Return {what: how many}
    deleted here: calls and cells a batch committed after the chunks passed
    (normally none), budgets (with their counters and alerts), webhooks
    (its endpoints, its events, and the deliveries of either), keys."""
    removed = {"calls": LlmCall.delete().where(LlmCall.tenant == tenant_id).execute(),
               "cells": UsageRollup.delete().where(UsageRollup.tenant_id == tenant_id).execute()}
    budgets = [budget_id for (budget_id,) in Budget.select(Budget.id).where(Budget.tenant == tenant_id).tuples()]
    for budget_id in budgets:
        spend.forget_budget(budget_id)
    removed["budgets"] = Budget.delete().where(Budget.tenant == tenant_id).execute()
    events = WebhookEvent.select(WebhookEvent.id).where(WebhookEvent.tenant_id == tenant_id)
    endpoints = WebhookEndpoint.select(WebhookEndpoint.id).where(WebhookEndpoint.tenant == tenant_id)
    (WebhookDelivery.delete()
     .where(WebhookDelivery.event.in_(events) | WebhookDelivery.endpoint.in_(endpoints))
     .execute())
    WebhookEvent.delete().where(WebhookEvent.tenant_id == tenant_id).execute()
    removed["webhooks"] = WebhookEndpoint.delete().where(WebhookEndpoint.tenant == tenant_id).execute()
    removed["keys"] = ApiKey.delete().where(ApiKey.tenant == tenant_id).execute()
    Tenant.delete().where(Tenant.tenant_id == tenant_id).execute()
    return removed

