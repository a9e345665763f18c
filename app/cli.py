"""Command line: `flask --app wsgi db|tenants|keys|calls ...`."""
import functools
import sys

import click
from flask import current_app
from flask.cli import AppGroup

from . import accounts, ingest
from .db import database
from .migrate import upgrade

db_cli = AppGroup("db", help="Database schema.")
tenants_cli = AppGroup("tenants", help="Tenants.")
keys_cli = AppGroup("keys", help="API keys.")
calls_cli = AppGroup("calls", help="LLM call records.")


def register(app):
    for group in (db_cli, tenants_cli, keys_cli, calls_cli):
        app.cli.add_command(group)


def account_errors(command):
    """Show an accounts error as the message of a failed command (exit 1)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except accounts.AccountError as error:
            raise click.ClickException(str(error)) from None

    return wrapper


@db_cli.command("upgrade")
def db_upgrade():
    """Apply pending migrations (safe to run again)."""
    applied = upgrade(database.obj)
    click.echo(f"Applied {len(applied)} migration(s): {', '.join(applied)}" if applied
               else "Database is up to date.")


@tenants_cli.command("create")
@click.argument("tenant_id")
@click.option("--name", help="Display name (default: the tenant id).")
@click.option("--allow-superusers", is_flag=True, help="Permit superuser keys for this tenant.")
@account_errors
def tenants_create(tenant_id, name, allow_superusers):
    """Create a tenant."""
    tenant = accounts.create_tenant(tenant_id, name, allow_superusers)
    click.echo(f"Created tenant {tenant.tenant_id}"
               + (" (allows superuser keys)" if tenant.allows_superusers else ""))


@tenants_cli.command("list")
def tenants_list():
    """List tenants: id, superusers allowed, name."""
    for tenant in accounts.list_tenants():
        flag = "superusers" if tenant.allows_superusers else "-"
        click.echo(f"{tenant.tenant_id}\t{flag}\t{tenant.name}")


@keys_cli.command("create")
@click.option("--tenant", "tenant_id", required=True)
@click.option("--name", required=True)
@click.option("--superuser", is_flag=True)
@account_errors
def keys_create(tenant_id, name, superuser):
    """Create a key; the key itself is printed once, alone on the last line."""
    api_key, key_string = accounts.create_key(tenant_id, name, superuser)
    kind = "superuser key" if api_key.is_superuser else "key"
    click.echo(f"Created {kind} {api_key.key_id} for tenant {tenant_id}. "
               "Store it now; it is not shown again:")
    click.echo(key_string)


@keys_cli.command("list")
@click.option("--tenant", "tenant_id")
@account_errors
def keys_list(tenant_id):
    """List keys: key_id, tenant, kind, state, name. Never the secret."""
    for api_key in list(accounts.list_keys(tenant_id)):
        kind = "superuser" if api_key.is_superuser else "tenant"
        state = f"revoked {api_key.revoked_at.isoformat()}" if api_key.revoked_at else "active"
        click.echo(f"{api_key.key_id}\t{api_key.tenant_id}\t{kind}\t{state}\t{api_key.name}")


@keys_cli.command("revoke")
@click.argument("key_id")
@account_errors
def keys_revoke(key_id):
    """Revoke a key; it stops working at once."""
    api_key = accounts.revoke_key(key_id)
    click.echo(f"Revoked key {api_key.key_id} at {api_key.revoked_at.isoformat()}")


@calls_cli.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8"))
def calls_import(file):
    """Import call records from a JSON Lines FILE ('-' for stdin), all or nothing."""
    repository = current_app.extensions["usage_repository"]
    try:
        created, duplicates = ingest.import_jsonl(file, repository)
    except ingest.ImportRejected as rejected:
        for number, reason in rejected.errors:
            click.echo(f"line {number}: {reason}", err=True)
        if rejected.count > len(rejected.errors):
            click.echo(f"... and {rejected.count - len(rejected.errors)} more invalid line(s)", err=True)
        click.echo(f"Nothing imported: {rejected.count} invalid line(s).", err=True)
        sys.exit(1)
    click.echo(f"Imported: {created} created, {duplicates} duplicates.")
