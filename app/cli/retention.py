"""`flask --app wsgi calls prune`: deleting raw calls in chunks
(app/pruning.py), with progress on a terminal."""
import sys

import click
from flask import current_app

from .. import pruning
from . import needs_schema
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
