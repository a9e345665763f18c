"""`flask --app wsgi calls|rollups ...`: importing and sampling calls, rebuilding and verifying rollups."""
import datetime as dt
import sys

import click
from flask import current_app
from flask.cli import AppGroup

from .. import accounts, ingest, sample
from ..repository import retention, rollups
from ..rollups import END_OF_TIME
from . import needs_schema

calls_cli = AppGroup("calls", help="LLM call records.")
rollups_cli = AppGroup("rollups", help="Pre-aggregated cells for percentiles=approximate.")


@calls_cli.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@needs_schema
def calls_import(file):
    """Import call records from a JSON Lines FILE ('-' for stdin).

    Every line is validated first: if any is invalid, nothing is imported.
    The records are then stored in transactions of a few thousand. If the
    import stops half-way, what was committed stays (the message says how
    much): run the same import again to complete it; records already stored
    count as duplicates.
    """
    repository = current_app.extensions["usage_repository"]
    progress = ingest.ImportProgress()
    try:
        ingest.import_jsonl(file, repository, progress)
    except ingest.ImportRejected as rejected:
        for number, reason in rejected.errors:
            click.echo(f"line {number}: {reason}", err=True)
        if rejected.count > len(rejected.errors):
            click.echo(f"... and {rejected.count - len(rejected.errors)} more invalid line(s)", err=True)
        click.echo(f"Nothing imported: {rejected.count} invalid line(s).", err=True)
        sys.exit(1)
    except (Exception, KeyboardInterrupt):
        click.echo(f"Import stopped. Committed so far: {progress.created} created, "
                   f"{progress.duplicates} duplicates; run the same import again to "
                   "complete it.", err=True)
        raise
    click.echo(f"Imported: {progress.created} created, {progress.duplicates} duplicates.")


@calls_cli.command("sample")
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 366),
              help="Days before today (UTC) to fill.")
@click.option("--per-day", default=20, show_default=True, type=click.IntRange(1, 10000),
              help="Calls per tenant and day.")
@click.option("--tenant", "tenant_ids", multiple=True,
              help="Only this tenant (repeat for several; default: every tenant).")
@needs_schema
def calls_sample(days, per_day, tenant_ids):
    """Record synthetic calls of the last days, to try the dashboard.

    Run again the same UTC day, it adds nothing: the same calls come out and
    are counted as duplicates. They go through the same validation as
    `calls import` and keep the rollups.
    """
    tenant_ids = tenant_ids or [tenant.tenant_id for tenant in accounts.list_tenants()]
    if not tenant_ids:
        raise click.ClickException("No tenant yet: create one first (flask --app wsgi tenants create acme).")
    lines = sample.sample_lines(tenant_ids, days, per_day, dt.datetime.now(dt.timezone.utc).date())
    try:
        created, duplicates = ingest.import_jsonl(lines, current_app.extensions["usage_repository"])
    except ingest.ImportRejected as rejected:  # an unknown --tenant
        raise click.ClickException(rejected.errors[0][1]) from None
    click.echo(f"Recorded sample calls for {', '.join(sorted(tenant_ids))}: "
               f"{created} created, {duplicates} duplicates.")


@rollups_cli.command("rebuild")
@needs_schema
def rollups_rebuild():
    """Recompute every rollup cell from the stored calls.

    For calls stored before the rollups existed (migration 004), and after a
    restore. One UTC month at a time, each in one transaction: ingestion
    waits while a month is rebuilt (on SQLite, at most SQLITE_BUSY_TIMEOUT,
    then its POST answers 503 and should be retried). Memory holds one day's
    calls and one month's cells. The months that have ended are sealed
    first (app/rollups.py): they get month cells, the current one not. The
    zones ROLLUP_ZONES names get their day cells and are then read
    (app/local_days.py); the cells of zones it no longer names are deleted.
    """
    rollups.seal()
    months = rollups.months_to_rebuild()
    written = 0
    with click.progressbar(months, label="Rebuilding rollups", file=sys.stderr,
                           item_show_func=_month_label) as bar:
        for month in bar:
            written += rollups.rebuild_month(month)
    rollups.mark_rebuilt()
    _report_calls_past_end_of_time()
    horizon = _horizon()
    click.echo(f"Rebuilt {written} rollup cell(s) over {len(months)} month(s)." + (
        "" if horizon is None else f" Calls before {horizon.isoformat()} (the retention horizon) were pruned: "
                                   "their day cells were kept, and month cells recomputed from them."))
    if current_app.config["ROLLUP_ZONES"]:
        click.echo(f"Day cells ready in {', '.join(current_app.config['ROLLUP_ZONES'])} (ROLLUP_ZONES).")


@rollups_cli.command("verify")
@needs_schema
def rollups_verify():
    """Compare every rollup cell with the stored calls; exit 1 on any
    difference, or on calls past the last month cells can hold. Before the
    retention horizon, where calls were pruned, month cells are compared
    with their day cells."""
    months = rollups.months_to_rebuild()
    found = []
    with click.progressbar(months, label="Verifying rollups", file=sys.stderr,
                           item_show_func=_month_label) as bar:
        for month in bar:
            found += rollups.differences(month)
    for (grain, start, *key), reason in found[:20]:
        click.echo(f"{grain} {start.isoformat()} {' '.join(key)}: {reason}", err=True)
    if found:
        click.echo(f"{len(found)} rollup cell(s) differ from the calls; "
                   "run `flask --app wsgi rollups rebuild`.", err=True)
    if _report_calls_past_end_of_time() or found:
        sys.exit(1)
    horizon = _horizon()
    if horizon is None:
        click.echo(f"Rollups match the calls ({len(months)} month(s)).")
    else:
        click.echo(f"Rollups match the calls from {horizon.isoformat()} (the retention horizon) on "
                   f"({len(months)} month(s)); before it the calls were pruned, and month cells match "
                   "their day cells.")


def _horizon():
    """The retention horizon if calls were pruned, else None."""
    return retention.pruned().horizon


def _report_calls_past_end_of_time():
    """Say how many calls no cell can hold (dated in December 9999, stored
    by a version that accepted any timestamp); return that number."""
    count = rollups.calls_past_end_of_time()
    if count:
        click.echo(f"{count} call(s) dated at or after {END_OF_TIME.isoformat()} lie past the last month "
                   "rollup cells can hold: approximate answers of open windows leave them out. "
                   "Ingestion refuses such timestamps now (CALLS_ACCEPTED_AHEAD): check and delete "
                   "these calls.", err=True)
    return count


def _month_label(month):
    return month.strftime("%Y-%m") if month else ""
