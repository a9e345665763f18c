"""Command line: `flask --app wsgi db|tenants|keys|calls|rollups ...`.

Every failure a user can cause or meet (an invalid argument, a database that
cannot be opened, a schema never migrated) ends the command with one line
saying what is wrong and exit status 1, never a traceback.
"""
import datetime as dt
import functools
import sys
from urllib.parse import urlsplit

import click
from flask import current_app
from flask.cli import AppGroup
from peewee import DatabaseError, InterfaceError

from . import accounts, ingest, sample, scopes
from .repository import rollups
from .rollups import END_OF_TIME
from .db import database, open_database
from .migrate import SchemaNotCurrent, require_current, upgrade
from .models import utcnow


def describe_database_error(error, url):
    """One line: which database (password hidden) and the driver's last word on it."""
    parts = urlsplit(url)
    if parts.password:
        url = url.replace(f":{parts.password}@", ":***@", 1)
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reason = lines[-1] if lines else type(error).__name__
    hint = ""
    if "does not exist" in reason and parts.scheme.startswith("postgres"):
        hint = f" Create it first: createdb {parts.path.lstrip('/')} (or psql -c 'CREATE DATABASE …')."
    elif "unable to open database file" in reason:
        hint = " Does its folder exist?"
    return f"Cannot open the database {url}: {reason}.{hint}"


def cli_errors(command):
    """Turn account and database errors into a one-line failure (exit 1)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (accounts.AccountError, SchemaNotCurrent) as error:
            raise click.ClickException(str(error)) from None
        except (DatabaseError, InterfaceError) as error:
            message = describe_database_error(error, current_app.config["DATABASE_URL"])
            raise click.ClickException(message) from None

    return wrapper


def needs_schema(command):
    """`cli_errors`, and first a check that every migration is applied: a
    database never migrated gets the command to run, not a missing-table error."""

    @functools.wraps(command)
    def checked(*args, **kwargs):
        require_current(database.obj)
        return command(*args, **kwargs)

    return cli_errors(checked)


db_cli = AppGroup("db", help="Database schema.")
tenants_cli = AppGroup("tenants", help="Tenants.")
keys_cli = AppGroup("keys", help="API keys.")
calls_cli = AppGroup("calls", help="LLM call records.")
rollups_cli = AppGroup("rollups", help="Pre-aggregated cells for percentiles=approximate.")


def register(app):
    from .budgets.commands import budgets_cli  # it uses this module's error handling
    from .webhooks.commands import webhooks_cli  # so does this one
    for group in (db_cli, tenants_cli, keys_cli, calls_cli, rollups_cli, budgets_cli, webhooks_cli):
        app.cli.add_command(group)


# Building an index over a large llm_call table outlasts any request's limit.
MIGRATION_STATEMENT_TIMEOUT = 6 * 3600


@db_cli.command("upgrade")
@cli_errors
def db_upgrade():
    """Apply pending migrations (safe to run again)."""
    limits = database.obj.limits._replace(statement=MIGRATION_STATEMENT_TIMEOUT)
    db = open_database(current_app.config["DATABASE_URL"], limits)
    try:
        applied = upgrade(db)
    finally:
        db.close()
    click.echo(f"Applied {len(applied)} migration(s): {', '.join(applied)}" if applied
               else "Database is up to date.")


@tenants_cli.command("create")
@click.argument("tenant_id")
@click.option("--name", help="Display name (default: the tenant id).")
@click.option("--allow-superusers", is_flag=True, help="Permit superuser keys for this tenant.")
@needs_schema
def tenants_create(tenant_id, name, allow_superusers):
    """Create a tenant."""
    tenant = accounts.create_tenant(tenant_id, name, allow_superusers)
    click.echo(f"Created tenant {tenant.tenant_id}"
               + (" (allows superuser keys)" if tenant.allows_superusers else ""))


@tenants_cli.command("list")
@needs_schema
def tenants_list():
    """List tenants: id, superusers allowed, name."""
    for tenant in accounts.list_tenants():
        flag = "superusers" if tenant.allows_superusers else "-"
        click.echo(f"{tenant.tenant_id}\t{flag}\t{tenant.name}")


class Duration(click.ParamType):
    """`90d`, `12h`, `30m`, `45s`, or a number of seconds: a timedelta."""

    name = "duration"
    UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

    def convert(self, value, param, ctx):
        if isinstance(value, dt.timedelta):
            return value
        text = value.strip().lower()
        number, unit = (text[:-1], text[-1]) if text[-1:] in self.UNITS else (text, "s")
        if not number.isdigit():
            self.fail(f"{value!r} is not a duration such as 90d, 12h, 30m or 3600.", param, ctx)
        return dt.timedelta(seconds=int(number) * self.UNITS[unit])


@keys_cli.command("create")
@click.option("--tenant", "tenant_id", required=True, help="The tenant the key belongs to.")
@click.option("--name", required=True, help="What the key is for, e.g. dashboard.")
@click.option("--superuser", is_flag=True, default=None,
              help="A superuser key: may reach every tenant; the tenant must allow them. "
                   "Implied by --scope all:read or --scope admin.")
@click.option("--scope", "scope_names", multiple=True, type=click.Choice(list(scopes.SCOPES)),
              help="What the key may do (repeat for several). Default: usage:read and calls:write, "
                   "all four with --superuser. A dashboard needs only usage:read or all:read.")
@click.option("--expires-in", type=Duration(), help="The key stops working after this, e.g. 90d.")
@needs_schema
def keys_create(tenant_id, name, superuser, scope_names, expires_in):
    """Create a key; the key itself is printed once, alone on the last line."""
    expires_at = utcnow() + expires_in if expires_in is not None else None
    api_key, key_string = accounts.create_key(tenant_id, name, superuser, scope_names or None, expires_at)
    _echo_new_key(f"Created {_kind(api_key)} {api_key.key_id} for tenant {tenant_id}", api_key, key_string)


def _kind(api_key):
    return "superuser key" if api_key.is_superuser else "key"


def _echo_new_key(done, api_key, key_string):
    expiry = f", expires {api_key.expires_at.isoformat()}" if api_key.expires_at else ""
    click.echo(f"{done} (scopes {' '.join(api_key.scopes)}{expiry}). Store it now; it is not shown again:")
    click.echo(key_string)


@keys_cli.command("list")
@click.option("--tenant", "tenant_id", help="Only this tenant's keys (default: every tenant).")
@needs_schema
def keys_list(tenant_id):
    """List keys: key_id, tenant, kind, state, scopes, name. Never the secret."""
    now = utcnow()
    for api_key in list(accounts.list_keys(tenant_id)):
        kind = "superuser" if api_key.is_superuser else "tenant"
        click.echo(f"{api_key.key_id}\t{api_key.tenant_id}\t{kind}\t{_state(api_key, now)}\t"
                   f"{','.join(api_key.scopes)}\t{api_key.name}")


def _state(api_key, now):
    if api_key.revoked_at:
        return f"revoked {api_key.revoked_at.isoformat()}"
    if api_key.expires_at:
        word = "expired" if api_key.expired(now) else "expires"
        replaced = f" (rotated to {api_key.replaced_by})" if api_key.replaced_by else ""
        return f"{word} {api_key.expires_at.isoformat()}{replaced}"
    return "active"


@keys_cli.command("rotate")
@click.argument("key_id")
@click.option("--grace", type=Duration(), default="0",
              help="How long the old key keeps working, e.g. 1h (default 0: it stops at once; "
                   "at most 30d).")
@needs_schema
def keys_rotate(key_id, grace):
    """Replace the key KEY_ID by a new one of the same tenant, name and scopes;
    the new key is printed once, alone on the last line."""
    new_key, key_string, old_key = accounts.rotate_key(key_id, grace)
    _echo_new_key(f"Rotated key {old_key.key_id}: it stops working at "
                  f"{old_key.expires_at.isoformat()}. Created {_kind(new_key)} {new_key.key_id}",
                  new_key, key_string)


@keys_cli.command("revoke")
@click.argument("key_id")
@needs_schema
def keys_revoke(key_id):
    """Revoke the key KEY_ID (as `keys list` shows it); it stops working at once."""
    api_key, already_revoked = accounts.revoke_key(key_id)
    if already_revoked:
        click.echo(f"Key {api_key.key_id} was already revoked at {api_key.revoked_at.isoformat()}")
    else:
        click.echo(f"Revoked key {api_key.key_id} at {api_key.revoked_at.isoformat()}")


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
    calls and one month's cells.
    """
    months = rollups.months_to_rebuild()
    written = 0
    with click.progressbar(months, label="Rebuilding rollups", file=sys.stderr,
                           item_show_func=_month_label) as bar:
        for month in bar:
            written += rollups.rebuild_month(month)
    rollups.mark_rebuilt()
    _report_calls_past_end_of_time()
    click.echo(f"Rebuilt {written} rollup cell(s) over {len(months)} month(s).")


@rollups_cli.command("verify")
@needs_schema
def rollups_verify():
    """Compare every rollup cell with the stored calls; exit 1 on any
    difference, or on calls past the last month cells can hold."""
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
    click.echo(f"Rollups match the calls ({len(months)} month(s)).")


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

