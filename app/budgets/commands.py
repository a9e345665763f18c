"""`flask --app wsgi budgets create|list|delete`: the budget routes' service on the command line."""
from decimal import Decimal, InvalidOperation

import click
from flask.cli import AppGroup
from marshmallow import ValidationError

from ..cli import needs_schema
from ..models import micros_to_usd, utcnow
from . import service, spending

budgets_cli = AppGroup("budgets", help="Budgets per tenant and calendar period.")


def _validated(**fields):
    """The fields as POST /v1/tenants/{id}/budgets validates them; a one-line error otherwise."""
    from ..api.budgets import BudgetSchema  # the routes' rules, not a copy of them
    try:
        return BudgetSchema().load({name: value for name, value in fields.items() if value is not None})
    except ValidationError as error:
        raise click.ClickException("; ".join(f"{name}: {' '.join(map(str, reasons))}"
                                             for name, reasons in error.messages.items())) from None


def _amount(text):
    try:
        return Decimal(text)
    except InvalidOperation:
        raise click.BadParameter(f"{text!r} is not an amount in US dollars.") from None


@budgets_cli.command("create")
@click.option("--tenant", "tenant_id", required=True)
@click.option("--name", required=True)
@click.option("--amount", "amount_usd", required=True, type=_amount, help="US dollars per period.")
@click.option("--period", required=True, type=click.Choice(["day", "week", "month"]))
@click.option("--tz", help="IANA zone of the periods (default UTC).")
@click.option("--threshold", "thresholds", multiple=True, type=_amount,
              help="A percentage that fires an alert (repeat; default 80 and 100).")
@click.option("--enforce", is_flag=True, help="GET /v1/budgets/check refuses once it is spent.")
@click.option("--model", help="Count only this model's calls.")
@click.option("--operation", help="Count only this operation's calls.")
@needs_schema
def budgets_create(tenant_id, thresholds, **fields):
    """Create a budget; prints its id and status."""
    budget = service.create_budget(tenant_id, **_validated(thresholds=list(thresholds) or None, **fields))
    click.echo(f"Created budget {budget.id} for tenant {tenant_id}: {_line(budget)}")


@budgets_cli.command("list")
@click.option("--tenant", "tenant_id", required=True)
@needs_schema
def budgets_list(tenant_id):
    """List a tenant's budgets: id, name, period, spent/amount, enforced."""
    for budget in service.list_budgets(tenant_id):
        click.echo(f"{budget.id}\t{budget.name}\t{_line(budget)}")


@budgets_cli.command("delete")
@click.argument("budget_id", type=int)
@needs_schema
def budgets_delete(budget_id):
    """Delete the budget BUDGET_ID."""
    budget = service.delete_budget(budget_id)
    click.echo(f"Deleted budget {budget.id} of tenant {budget.tenant_id}.")


def _line(budget):
    status = spending.status(budget, utcnow())
    enforced = ", enforced" if budget.enforce else ""
    return (f"{status['spent_usd']} of {micros_to_usd(budget.amount_micro_usd)} USD this {budget.period} "
            f"({status['period_start']} to {status['period_end']}){enforced}")
