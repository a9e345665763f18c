"""`flask --app wsgi calls prune` and `tenants erase`: deleting raw calls in
chunks (app/pruning.py, app/erasure.py), with progress on a terminal."""
import sys

import click
from flask import current_app

from .. import erasure, pruning
from . import needs_schema
from .accounts import tenants_cli
from .calls import calls_cli


def _progress_bar(length, label):
    """click's progress bar on standard error, drawn only when that is a terminal."""
    return click.progressbar(length=length, label=label, file=sys.stderr)


@calls_cli.command("prune")
@needs_schema
def calls_prune():
    """Delete the raw calls before the retention horizon: the start of the
    UTC day RETENTION_DAYS days ago. Their rollup cells stay, so
    percentiles=approximate still answers over whole pruned days; answers
    needing the pruned calls themselves are refused (409). Deletes in short
    transactions, oldest first: ingestion goes on meanwhile. Interrupted, run
    it again. Without RETENTION_DAYS, deletes nothing."""
    days = current_app.config["RETENTION_DAYS"]
    if days is None:
        click.echo("RETENTION_DAYS is not set: every call is kept.")
        return
    try:
        plan = pruning.plan(days)
    except pruning.CellsMissing as error:
        raise click.ClickException(str(error)) from None
    horizon = plan.pruned.horizon.isoformat()
    with _progress_bar(plan.calls, f"Pruning calls before {horizon}") as bar:
        deleted = pruning.prune(plan, progress=bar.update)
    click.echo(f"Pruned {deleted} call(s) before {horizon} (RETENTION_DAYS={days}); their rollup cells are kept.")


@tenants_cli.command("erase")
@click.argument("tenant_id", required=False)
@click.option("--pending", is_flag=True,
              help="Instead of TENANT_ID: finish every erasure begun and not completed (by DELETE "
                   "/v1/tenants/{tenant_id}, or interrupted). Asks nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@needs_schema
def tenants_erase(tenant_id, pending, yes):
    """Erase the tenant TENANT_ID: its calls, rollup cells, keys, budgets and
    webhooks. It becomes unknown and its keys stop working at once; the rest
    is deleted in short transactions. Interrupted, run it again: it goes on
    where it stopped. The audit log keeps the event."""
    if pending == (tenant_id is not None):
        raise click.UsageError("Name one TENANT_ID, or give --pending.")
    if not (pending or yes):  # before anything changes; no answer, or "n", exits 1
        click.confirm(f"Erase tenant {tenant_id} with {_listed(erasure.tally_of(tenant_id))}? "
                      "This cannot be undone.", abort=True)
    for tenant_id in erasure.being_erased() if pending else [tenant_id]:
        _erase(erasure.begin(tenant_id))


def _erase(begun):
    tally = begun.tally
    if begun.resumed:
        click.echo(f"Tenant {begun.tenant_id} is being erased since {begun.since.isoformat()}: going on.")
    with _progress_bar(tally["calls"] + tally["cells"], f"Erasing tenant {begun.tenant_id}") as bar:
        done = erasure.complete(begun, progress=bar.update)
    click.echo(f"Erased tenant {begun.tenant_id}: {_listed(done.deleted)} deleted.")


def _listed(counts):
    names = (("calls", "call(s)"), ("cells", "rollup cell(s)"), ("keys", "key(s)"), ("budgets", "budget(s)"),
             ("webhooks", "webhook(s)"))
    return ", ".join(f"{counts.get(name, 0)} {label}" for name, label in names)
