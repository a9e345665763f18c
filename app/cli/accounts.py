"""`flask --app wsgi tenants|keys ...`: the service layer of app/accounts.py on the command line."""
import datetime as dt

import click
from flask.cli import AppGroup

from .. import accounts, scopes
from ..models import utcnow
from . import needs_schema

tenants_cli = AppGroup("tenants", help="Tenants.")
keys_cli = AppGroup("keys", help="API keys.")


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
