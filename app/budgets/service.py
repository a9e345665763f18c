"""Creating, changing, listing and deleting budgets: the layer the routes and the CLI share.

Every write runs in one transaction with its audit event and the alerts it
fires. Failures raise the exceptions below (the routes answer 404 or 422).
"""
import json
from decimal import Decimal

from .. import audit
from ..accounts import AccountError, get_tenant
from ..db import database
from ..db.locks import wait_for_ingestion
from ..models import Budget, micros_to_usd, usd_to_micros, utcnow
from ..repository import spend
from . import alerts

# A change to one of these makes a new revision: its spend is counted and
# its thresholds fire anew.
REVISING = ("amount_micro_usd", "thresholds_text", "period", "tz", "model", "operation")


class UnknownBudget(AccountError, LookupError):
    pass


def create_budget(tenant_id, name, amount_usd, period, tz="UTC", thresholds=(80, 100), enforce=False,
                  model=None, operation=None):
    """The new Budget (fields validated by the caller: app/api/budgets.py).
    Fires at once the thresholds its current period has already reached."""
    now = utcnow()
    with database.atomic():
        wait_for_ingestion(tenant_id)
        budget = Budget.create(tenant=get_tenant(tenant_id), name=name, amount_micro_usd=usd_to_micros(amount_usd),
                               period=period, tz=tz, thresholds_text=thresholds_text(thresholds),
                               enforce=enforce, model=model, operation=operation, created_at=now, updated_at=now)
        audit.record("budget.create", f"budget:{budget.id}", **_described(budget))
        alerts.fire_reached(budget, now)
    return budget


def update_budget(budget_id, **changes):
    """Apply `changes` (the create_budget names; None for model/operation
    removes the filter). Changing what the spend or the thresholds mean
    starts a new revision, which fires what it has reached at once."""
    now = utcnow()
    with database.atomic():
        budget = get_budget(budget_id)
        wait_for_ingestion(budget.tenant_id)
        budget = get_budget(budget_id)  # as it is now that no batch of its tenant is in flight
        before = {name: getattr(budget, name) for name in REVISING}
        for name, value in changes.items():
            if name == "amount_usd":
                budget.amount_micro_usd = usd_to_micros(value)
            elif name == "thresholds":
                budget.thresholds_text = thresholds_text(value)
            else:
                setattr(budget, name, value)
        revised = any(getattr(budget, name) != value for name, value in before.items())
        budget.revision += revised
        budget.updated_at = now
        budget.save()
        audit.record("budget.update", f"budget:{budget.id}", revised=revised, **_described(budget))
        if revised:
            alerts.fire_reached(budget, now)
    return budget


def delete_budget(budget_id):
    """Delete the budget with its counters and alerts; a batch of its tenant in
    flight commits first, so none writes a counter of it afterwards."""
    with database.atomic():
        wait_for_ingestion(get_budget(budget_id).tenant_id)
        budget = get_budget(budget_id)
        budget.delete_instance()
        spend.forget_budget(budget.id)
        audit.record("budget.delete", f"budget:{budget.id}", **_described(budget))
    return budget


def get_budget(budget_id, tenant_id=None):
    """The budget; UnknownBudget if there is none, or (with `tenant_id`) it is another tenant's."""
    query = Budget.select().where(Budget.id == budget_id)
    if tenant_id is not None:
        query = query.where(Budget.tenant == tenant_id)
    budget = query.first()
    if budget is None:
        raise UnknownBudget(f"Unknown budget {budget_id}.")
    return budget


def list_budgets(tenant_id):
    """The tenant's budgets, oldest first (UnknownTenant if there is no such tenant)."""
    get_tenant(tenant_id)
    return list(Budget.select().where(Budget.tenant == tenant_id).order_by(Budget.id))


def thresholds_text(thresholds):
    """The budget.thresholds column: distinct decimal strings ("80", "12.5"), ascending."""
    values = sorted({Decimal(str(t)) for t in thresholds})
    return json.dumps([str(int(v)) if v == v.to_integral_value() else str(v.normalize()) for v in values])


def _described(budget):
    return {"tenant_id": budget.tenant_id, "name": budget.name,
            "amount_usd": str(micros_to_usd(budget.amount_micro_usd)), "period": budget.period,
            "tz": budget.tz, "thresholds": json.loads(budget.thresholds_text), "enforce": budget.enforce,
            "model": budget.model, "operation": budget.operation, "revision": budget.revision}
