"""Budgets: /v1/tenants/{tenant_id}/budgets, /v1/budgets, and the enforcement check.

What the numbers mean is app/budgets/spending.py; creating and changing
them, app/budgets/service.py.
"""
import datetime as dt
import math

from flask import g
from flask_smorest import abort
from marshmallow import Schema, ValidationError, fields, validate, validates

from .. import buckets, scopes
from ..accounts import TENANT_ID_PATTERN
from ..auth import require_scope
from ..budgets import periods, service, spending
from ..models import micros_to_usd, utcnow
from ..records import MAX_COST_USD, OPERATION_PATTERN, Text, WholeMatch, at_most_six_places
from .admin import ACCOUNT_ERRORS, TENANT_PATH
from .blueprint import Blueprint, json_error
from .usage import money

blp = Blueprint("budgets", __name__, url_prefix="/v1",
                description="Budgets per tenant and calendar period, their alerts, and the check "
                            "the backend asks before it spends.")


@blp.errorhandler(service.AccountError)
def budget_error(error):
    return json_error({**ACCOUNT_ERRORS, service.UnknownBudget: 404}[type(error)], str(error))


MAX_THRESHOLDS = 20


def at_most_two_places(value):
    if value.as_tuple().exponent < -2 and value != value.quantize(spending.HUNDREDTH):
        raise ValidationError("At most 2 decimal places.")


class BudgetSchema(Schema):
    id = fields.Integer(dump_only=True)
    tenant_id = fields.String(dump_only=True)
    name = Text(required=True, validate=validate.Length(1, 255), metadata={"example": "monthly cap"})
    amount_usd = fields.Decimal(
        required=True, as_string=False, allow_nan=False,
        validate=[validate.Range(0, MAX_COST_USD * 1000, min_inclusive=False), at_most_six_places],
        metadata={"description": "US dollars per period, > 0, at most 6 decimals.", "example": 500})
    period = fields.String(required=True, validate=validate.OneOf(periods.PERIODS), metadata={
        "description": "`day`, `week` (ISO: from Monday) or `month`, on the calendar of `tz`."})
    tz = fields.String(load_default="UTC", metadata={
        "description": "IANA zone of the periods (default UTC): they start at its local midnight, "
                       "DST-exact.", "example": "Europe/Berlin"})
    thresholds = fields.List(
        fields.Decimal(as_string=False, allow_nan=False,
                       validate=[validate.Range(0, 1000, min_inclusive=False), at_most_two_places]),
        load_default=lambda: [80, 100], validate=validate.Length(1, MAX_THRESHOLDS),
        metadata={"description": "Percentages of the amount (> 0, ≤ 1000) whose crossing fires a "
                                 "`budget.threshold_crossed` event, once per period (default [80, 100]).",
                  "example": [50, 80, 100]})
    enforce = fields.Boolean(load_default=False, metadata={
        "description": "Does `GET /v1/budgets/check` refuse (429) once the amount is spent?"})
    model = Text(load_default=None, allow_none=True, validate=validate.Length(1, 255),
                 metadata={"description": "Count only calls of this model (null: every model)."})
    operation = fields.String(load_default=None, allow_none=True, validate=WholeMatch(OPERATION_PATTERN),
                              metadata={"description": "Count only calls of this operation (null: every one)."})
    revision = fields.Integer(dump_only=True, metadata={
        "description": "Goes up when the amount, thresholds, filters, period or zone change: "
                       "the thresholds are then re-armed."})
    created_at = fields.DateTime(dump_only=True, format="iso")
    updated_at = fields.DateTime(dump_only=True, format="iso")
    status = fields.Nested(lambda: StatusSchema(), dump_only=True)

    @validates("tz")
    def known_zone(self, value, **kwargs):
        try:
            buckets.zone(value)
        except ValueError as error:
            raise ValidationError(str(error)) from None


class BudgetChangesSchema(BudgetSchema):
    """What PATCH takes: any of the fields, none required, no defaults."""


class StatusSchema(Schema):
    period_start = fields.String(required=True, metadata={"description": "RFC 3339 with the zone's offset."})
    period_end = fields.String(required=True, metadata={"description": "Exclusive; the next period's start."})
    spent_usd = money("Ok calls of the period matching the filters, as /v1/usage sums them:")
    remaining_usd = money("amount − spent, never below zero:")
    percent_used = fields.Decimal(as_string=False, required=True, metadata={
        "description": "spent / amount × 100, 2 decimals (half-even)."})
    thresholds_crossed = fields.List(fields.Decimal(as_string=False), required=True)
    projected_usd = money("Spent so far extrapolated linearly to the whole period:")


class CheckArgs(Schema):
    tenant_id = fields.String(validate=WholeMatch(TENANT_ID_PATTERN), metadata={
        "description": "Required with a superuser key; a tenant key checks its own tenant."})
    model = Text(validate=validate.Length(1, 255), metadata={"description": "The model the call will use."})
    operation = fields.String(validate=WholeMatch(OPERATION_PATTERN), metadata={
        "description": "The operation the call is for."})


class CheckSchema(Schema):
    allowed = fields.Boolean(required=True)
    tenant_id = fields.String(required=True)
    budgets = fields.List(fields.Nested(BudgetSchema), required=True, metadata={
        "description": "The enforced budgets that apply to the call, with their status."})
    budget_id = fields.Integer(metadata={"description": "When refused: the budget that refuses (the "
                                                        "one that resets last, if several)."})
    amount_usd = fields.Decimal(as_string=False, places=6)
    spent_usd = fields.Decimal(as_string=False, places=6)
    resets_at = fields.String(metadata={"description": "When refused: the end of that budget's period."})


BUDGET_PATH = {"in": "path", "name": "budget_id", "description": "The budget's id."}
# Ids past a 64-bit integer are no budget's: a 404 before any query (SQLite cannot bind them).
BUDGET_ROUTE = f"/budgets/<int(max={2**63 - 1}):budget_id>"


def _shown(budget, now):
    """The budget as the API shows it."""
    return {**{name: getattr(budget, name) for name in (
                "id", "tenant_id", "name", "period", "tz", "enforce", "model", "operation", "revision",
                "created_at", "updated_at")},
            "amount_usd": micros_to_usd(budget.amount_micro_usd),
            "thresholds": spending.thresholds_of(budget),
            "status": spending.status(budget, now)}


def _reaches_every_tenant():
    return any(scope in g.api_key.scopes for scope in (scopes.ALL_READ, scopes.ADMIN))


@blp.route("/tenants/<tenant_id:tenant_id>/budgets", methods=["POST"], parameters=[TENANT_PATH])
@blp.doc(operationId="createBudget", summary="Create a budget",
         description="A spending limit for the tenant per day, ISO week or month of `tz`. Thresholds "
                     "its current period has already reached fire at once.")
@require_scope(scopes.ADMIN)
@blp.arguments(BudgetSchema)
@blp.response(201, BudgetSchema)
@blp.errors(400, 401, 403, 413, 415, 429, 503, e404="Unknown tenant.", e422="Invalid field (named).")
def create_budget(fields_, tenant_id):
    return _shown(service.create_budget(tenant_id, **fields_), utcnow())


@blp.route("/tenants/<tenant_id:tenant_id>/budgets", methods=["GET"], parameters=[TENANT_PATH])
@blp.doc(operationId="listTenantBudgets", summary="A tenant's budgets", description="Oldest first.")
@require_scope(scopes.ALL_READ, scopes.ADMIN)
@blp.response(200, BudgetSchema(many=True))
@blp.errors(401, 403, 429, 503, e404="Unknown tenant.")
def list_tenant_budgets(tenant_id):
    now = utcnow()
    return [_shown(budget, now) for budget in service.list_budgets(tenant_id)]


@blp.route("/budgets", methods=["GET"])
@blp.doc(operationId="listBudgets", summary="The caller's tenant's budgets", description="Oldest first.")
@require_scope(scopes.USAGE_READ)
@blp.response(200, BudgetSchema(many=True))
@blp.errors(401, 403, 429, 503)
def list_budgets():
    now = utcnow()
    return [_shown(budget, now) for budget in service.list_budgets(g.api_key.tenant_id)]


@blp.route("/budgets/check", methods=["GET"])
@blp.doc(operationId="checkBudgets", summary="May the tenant spend?",
         description="200 with `allowed: true` while every enforced budget that applies to the call "
                     "(those without a model or operation filter, and those whose filter the call's "
                     "`model`/`operation` match) has spent less than its amount; otherwise 429 with "
                     "`allowed: false`, the refusing budget and `Retry-After` (whole seconds until its "
                     "period ends). Recording calls is never refused because of a budget.")
@require_scope(scopes.CALLS_WRITE)
@blp.arguments(CheckArgs, location="query", as_kwargs=False)
@blp.response(200, CheckSchema)
@blp.alt_response(429, schema=CheckSchema, description="A budget is spent: `allowed: false`.",
                  headers={"Retry-After": {"description": "Seconds until the budget's period ends.",
                                           "schema": {"type": "integer", "minimum": 1}}})
@blp.errors(401, 403, 422, 503, e404="Unknown tenant.")
def check_budgets(args):
    tenant_id = _checked_tenant(args.get("tenant_id"))
    now = utcnow()
    applicable = [_shown(budget, now) for budget in service.list_budgets(tenant_id)
                  if spending.applies(budget, args.get("model"), args.get("operation"))]
    spent = [b for b in applicable if b["status"]["spent_usd"] >= b["amount_usd"]]
    body = {"allowed": not spent, "tenant_id": tenant_id, "budgets": applicable}
    if not spent:
        return body
    refusing = max(spent, key=lambda b: dt.datetime.fromisoformat(b["status"]["period_end"]))
    resets_at = dt.datetime.fromisoformat(refusing["status"]["period_end"])
    retry_after = max(1, math.ceil((resets_at - now).total_seconds()))
    return ({**body, "budget_id": refusing["id"], "amount_usd": refusing["amount_usd"],
             "spent_usd": refusing["status"]["spent_usd"], "resets_at": refusing["status"]["period_end"]},
            429, {"Retry-After": str(retry_after)})


def _checked_tenant(tenant_id):
    own = g.api_key.tenant_id
    if not g.api_key.is_superuser:
        if tenant_id not in (None, own):
            abort(403, message=f"This key checks only tenant {own!r}.")
        return own
    if tenant_id is None:
        abort(422, errors={"query": {"tenant_id": ["Required with a superuser key."]}})
    return tenant_id


@blp.route(BUDGET_ROUTE, methods=["GET"], parameters=[BUDGET_PATH])
@blp.doc(operationId="getBudget", summary="A budget and its status",
         description="A tenant key sees its own tenant's budgets (another's is a 404); a key with "
                     "`all:read` or `admin` any budget.")
@require_scope(scopes.USAGE_READ, scopes.ALL_READ, scopes.ADMIN)
@blp.response(200, BudgetSchema)
@blp.errors(401, 403, 429, 503, e404="Unknown budget.")
def get_budget(budget_id):
    tenant_id = None if _reaches_every_tenant() else g.api_key.tenant_id
    return _shown(service.get_budget(budget_id, tenant_id), utcnow())


@blp.route(BUDGET_ROUTE, methods=["PATCH"], parameters=[BUDGET_PATH])
@blp.doc(operationId="updateBudget", summary="Change a budget",
         description="Any of the creation fields. Changing the amount, thresholds, filters, period or "
                     "zone re-arms the thresholds (a new `revision`), and those its current period "
                     "has reached fire at once.")
@require_scope(scopes.ADMIN)
@blp.arguments(BudgetChangesSchema(partial=True))
@blp.response(200, BudgetSchema)
@blp.errors(400, 401, 403, 413, 415, 429, 503, e404="Unknown budget.", e422="Invalid field (named).")
def update_budget(changes, budget_id):
    return _shown(service.update_budget(budget_id, **changes), utcnow())


@blp.route(BUDGET_ROUTE, methods=["DELETE"], parameters=[BUDGET_PATH])
@blp.doc(operationId="deleteBudget", summary="Delete a budget",
         description="Its alerts already published stay in the webhook deliveries.")
@require_scope(scopes.ADMIN)
@blp.response(204)
@blp.errors(401, 403, 429, 503, e404="Unknown budget.")
def delete_budget(budget_id):
    service.delete_budget(budget_id)
