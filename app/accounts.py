"""Tenants and API keys: the one service layer behind the CLI and the admin routes.

Every write runs in `database.atomic()`. Failures raise the exceptions below,
which the CLI turns into a message and a non-zero exit and the routes into a
JSON error.
"""
import datetime as dt
import re

from peewee import IntegrityError

from . import keys
from .db import database, write_unless_locked
from .models import ApiKey, Tenant, utcnow

TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"

# `last_used_at` is refreshed at most this often per key, so that reading
# statistics does not turn every request into a write.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


class AccountError(Exception):
    """Base class; `str(error)` is the message shown to the user."""


class InvalidTenantId(AccountError, ValueError):
    pass


class TenantExists(AccountError):
    pass


class UnknownTenant(AccountError, LookupError):
    pass


class UnknownKey(AccountError, LookupError):
    pass


class SuperuserNotAllowed(AccountError, ValueError):
    pass


def create_tenant(tenant_id, name=None, allows_superusers=False):
    if not re.fullmatch(TENANT_ID_PATTERN, tenant_id or ""):
        raise InvalidTenantId(
            f"Invalid tenant_id {tenant_id!r}: use 1-64 characters of a-z, 0-9, '_' "
            "and '-', starting with a letter or digit."
        )
    try:
        with database.atomic():
            return Tenant.create(
                tenant_id=tenant_id,
                name=name or tenant_id,
                allows_superusers=allows_superusers,
            )
    except IntegrityError:
        raise TenantExists(f"Tenant {tenant_id!r} already exists.") from None


def get_tenant(tenant_id):
    tenant = Tenant.get_or_none(Tenant.tenant_id == tenant_id)
    if tenant is None:
        raise UnknownTenant(f"Unknown tenant {tenant_id!r}.")
    return tenant


def list_tenants(page=None, page_size=None):
    """Tenants by tenant_id; with `page` (1-based), returns (that page, total count)."""
    query = Tenant.select().order_by(Tenant.tenant_id)
    if page is None:
        return list(query)
    total = query.count()
    if (page - 1) * page_size >= total:
        return [], total  # past the end; also keeps huge page numbers out of SQL
    return list(query.paginate(page, page_size)), total


def create_key(tenant_id, name, is_superuser=False):
    """Return (api_key, key_string). The key string exists only in this return value."""
    with database.atomic():
        tenant = get_tenant(tenant_id)
        if is_superuser and not tenant.allows_superusers:
            raise SuperuserNotAllowed(
                f"Tenant {tenant_id!r} does not allow superuser keys: only a tenant created "
                "with `allows_superusers: true` (CLI: `tenants create --allow-superusers`) may "
                "hold them."
            )
        key_id, secret, key_string = keys.new_key()
        api_key = ApiKey.create(
            key_id=key_id,
            tenant=tenant,
            name=name,
            is_superuser=is_superuser,
            secret_sha256=keys.secret_digest(secret),
        )
    return api_key, key_string


def list_keys(tenant_id=None):
    query = ApiKey.select().order_by(ApiKey.tenant, ApiKey.created_at, ApiKey.key_id)
    if tenant_id is not None:
        query = query.where(ApiKey.tenant == get_tenant(tenant_id))
    return query


def revoke_key(key_id):
    """Revoke a key; return (api_key, whether it was revoked before).

    Idempotent: a revoked key keeps its first revocation time.
    """
    with database.atomic():
        api_key = ApiKey.get_or_none(ApiKey.key_id == key_id)
        if api_key is None:
            raise UnknownKey(f"Unknown key {key_id!r}.")
        already_revoked = api_key.revoked_at is not None
        if not already_revoked:
            api_key.revoked_at = utcnow()
            api_key.save(only=[ApiKey.revoked_at])
    return api_key, already_revoked


def authenticate(key_string):
    """Return the live ApiKey a presented key string names, or None.

    Looked up in the database on every request (no per-process cache), so a
    revocation is seen by every worker from the next request on.
    """
    parts = keys.split_key(key_string)
    if parts is None:
        return None
    key_id, secret = parts
    api_key = ApiKey.get_or_none(ApiKey.key_id == key_id)
    if api_key is None or api_key.revoked_at is not None:
        return None
    if not keys.secret_matches(secret, api_key.secret_sha256):
        return None
    _touch(api_key)
    return api_key


def _touch(api_key):
    """Refresh `last_used_at` (at most once a minute), unless that means waiting.

    Every authenticated request passes here, reads included. If a lock the
    update needs is held (SQLite's write lock, during an import or any other
    write; a row lock on the key in PostgreSQL), the refresh is skipped rather
    than waited for: a read must not queue behind a writer, and a later request
    refreshes it.
    """
    now = utcnow()
    if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION:
        def refresh():
            (ApiKey
             .update(last_used_at=now)
             .where(ApiKey.key_id == api_key.key_id)
             .execute())

        if write_unless_locked(refresh):  # its own transaction
            api_key.last_used_at = now


def existing_tenant_ids(tenant_ids):
    """The subset of `tenant_ids` that are tenants (one query)."""
    tenant_ids = set(tenant_ids)
    if not tenant_ids:
        return set()
    return {t for (t,) in Tenant.select(Tenant.tenant_id).where(Tenant.tenant_id.in_(tenant_ids)).tuples()}
