"""Tenants and API keys: the one service layer behind the CLI and the admin routes.

Every write runs in `database.atomic()`, together with its audit event
(app/audit.py). Failures raise the exceptions below, which the CLI turns into
a message and a non-zero exit and the routes into a JSON error.

A tenant whose erasure has begun (`erasing_since`, app/erasure.py) is no
tenant here: unknown to every lookup, and to ingestion.
"""
import datetime as dt
import re

from peewee import IntegrityError

from . import audit, keys
from . import scopes as scopes_module
from .db import database, write_unless_locked
from .models import ApiKey, Tenant, page_of, utcnow

TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"

# `last_used_at` is refreshed at most this often per key, so that reading
# statistics does not turn every request into a write.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
# Tenants not being erased: the only ones there are, to everything but app/erasure.py.
LIVE = Tenant.erasing_since.is_null()
# A rotated key works at most this long beside its replacement.
MAX_ROTATION_GRACE = dt.timedelta(days=30)
# rotate_key's default for the new key's expiry: the old key's lifetime, from now.
UNCHANGED_LIFETIME = object()


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


class InvalidKeySettings(AccountError, ValueError):
    """Unknown or ill-matched scopes, an expiry in the past, a grace out of range."""


class KeyNotRotatable(AccountError):
    pass


class KeyRefused(Exception):
    """A presented key that does not authenticate; `reason` is INVALID or EXPIRED."""

    INVALID, EXPIRED = "invalid", "expired"

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


def create_tenant(tenant_id, name=None, allows_superusers=False):
    if not re.fullmatch(TENANT_ID_PATTERN, tenant_id or ""):
        raise InvalidTenantId(
            f"Invalid tenant_id {tenant_id!r}: use 1-64 characters of a-z, 0-9, '_' "
            "and '-', starting with a letter or digit."
        )
    try:
        with database.atomic():
            tenant = Tenant.create(
                tenant_id=tenant_id,
                name=name or tenant_id,
                allows_superusers=allows_superusers,
            )
            audit.record("tenant.create", f"tenant:{tenant_id}", name=tenant.name,
                         allows_superusers=allows_superusers)
            return tenant
    except IntegrityError:
        if Tenant.select().where((Tenant.tenant_id == tenant_id) & ~LIVE).exists():
            raise TenantExists(f"Tenant {tenant_id!r} is being erased: finish that first (`flask --app wsgi "
                               f"tenants erase {tenant_id}`), then create it anew.") from None
        raise TenantExists(f"Tenant {tenant_id!r} already exists.") from None


def get_tenant(tenant_id):
    tenant = Tenant.get_or_none((Tenant.tenant_id == tenant_id) & LIVE)
    if tenant is None:
        raise UnknownTenant(f"Unknown tenant {tenant_id!r}.")
    return tenant


def list_tenants(page=None, page_size=None):
    """Tenants by tenant_id; with `page` (1-based), returns (that page, total count)."""
    query = Tenant.select().where(LIVE).order_by(Tenant.tenant_id)
    if page is None:
        return list(query)
    return page_of(query, page, page_size)


def create_key(tenant_id, name, is_superuser=None, scopes=None, expires_at=None):
    """Return (api_key, key_string). The key string exists only in this return value.

    `scopes` None gives the defaults of the key's kind, and `is_superuser`
    None follows from the scopes (app/scopes.py for_new_key); `expires_at`
    (aware) must lie in the future.
    """
    try:
        scope_names, is_superuser = scopes_module.for_new_key(scopes, is_superuser)
    except scopes_module.InvalidScopes as error:
        raise InvalidKeySettings(str(error)) from None
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidKeySettings(f"expires_at {expires_at.isoformat()} has passed: a new key must "
                                 "expire in the future.")
    with database.atomic():
        tenant = get_tenant(tenant_id)
        if is_superuser and not tenant.allows_superusers:
            raise SuperuserNotAllowed(
                f"Tenant {tenant_id!r} does not allow superuser keys, which the scopes all:read "
                "and admin need: only a tenant created with `allows_superusers: true` (CLI: "
                "`tenants create --allow-superusers`) may hold them."
            )
        api_key, key_string = _new_key(tenant, name, is_superuser, scope_names, expires_at)
        audit.record("key.create", f"key:{api_key.key_id}", **_described(api_key))
    return api_key, key_string


def _new_key(tenant, name, is_superuser, scope_names, expires_at):
    key_id, secret, key_string = keys.new_key()
    api_key = ApiKey.create(
        key_id=key_id,
        tenant=tenant,
        name=name,
        is_superuser=is_superuser,
        scopes_text=scopes_module.stored(scope_names),
        expires_at=expires_at,
        secret_sha256=keys.secret_digest(secret),
    )
    return api_key, key_string


def _described(api_key):
    """What the audit log says of a key: never its secret."""
    return {"tenant_id": api_key.tenant_id, "name": api_key.name, "is_superuser": api_key.is_superuser,
            "scopes": api_key.scopes, "expires_at": api_key.expires_at}


def list_keys(tenant_id=None):
    query = ApiKey.select().order_by(ApiKey.tenant, ApiKey.created_at, ApiKey.key_id)
    if tenant_id is not None:
        query = query.where(ApiKey.tenant == get_tenant(tenant_id))
    return query


def _get_key(key_id):
    api_key = ApiKey.get_or_none(ApiKey.key_id == key_id)
    if api_key is None:
        raise UnknownKey(f"Unknown key {key_id!r}.")
    return api_key


def revoke_key(key_id):
    """Revoke a key; return (api_key, whether it was revoked before).

    Idempotent: a revoked key keeps its first revocation time.
    """
    with database.atomic():
        api_key = _get_key(key_id)
        already_revoked = api_key.revoked_at is not None
        if not already_revoked:
            api_key.revoked_at = utcnow()
            api_key.save(only=[ApiKey.revoked_at])
        audit.record("key.revoke", f"key:{key_id}", already_revoked=already_revoked,
                     revoked_at=api_key.revoked_at)
    return api_key, already_revoked


def rotate_key(key_id, grace, expires_at=UNCHANGED_LIFETIME):
    """Replace a live key by a new one of the same tenant, name, kind and
    scopes; the old key keeps working for `grace` (a timedelta), then
    expires. Return (new api_key, new key string, old api_key).

    The new key's `expires_at`: by default, none if the old key had none,
    else the old key's lifetime counted from now (a 90-day key is replaced
    by a 90-day key). A key may be rotated once: a revoked, expired or
    already rotated key is refused (KeyNotRotatable). Two rotations at the
    same moment: one wins, the other is refused, and no second key is left.
    """
    if not dt.timedelta(0) <= grace <= MAX_ROTATION_GRACE:
        raise InvalidKeySettings(f"grace_seconds must be 0 to {int(MAX_ROTATION_GRACE.total_seconds())} "
                                 f"({MAX_ROTATION_GRACE.days} days).")
    now = utcnow()
    with database.atomic():
        old = _get_key(key_id)
        _check_rotatable(old, now)
        if expires_at is UNCHANGED_LIFETIME:
            expires_at = None if old.expires_at is None else now + (old.expires_at - old.created_at)
        elif expires_at is not None and expires_at <= now:
            raise InvalidKeySettings(f"expires_at {expires_at.isoformat()} has passed: the new key "
                                     "must expire in the future.")
        new, key_string = _new_key(old.tenant, old.name, old.is_superuser, old.scopes, expires_at)
        old_expires_at = now + grace if old.expires_at is None else min(old.expires_at, now + grace)
        # Conditional: of two concurrent rotations only one updates the row;
        # the other raises, and its new key is rolled back with it.
        rotated = (ApiKey
                   .update(replaced_by=new.key_id, expires_at=old_expires_at)
                   .where((ApiKey.key_id == key_id) & ApiKey.replaced_by.is_null()
                          & ApiKey.revoked_at.is_null())
                   .execute())
        if not rotated:
            raise KeyNotRotatable(f"Key {key_id!r} was rotated or revoked meanwhile.")
        old.replaced_by, old.expires_at = new.key_id, old_expires_at
        audit.record("key.rotate", f"key:{key_id}", replaced_by=new.key_id,
                     grace_seconds=int(grace.total_seconds()), old_expires_at=old_expires_at,
                     new_expires_at=expires_at)
    return new, key_string, old


def _check_rotatable(api_key, now):
    if api_key.revoked_at is not None:
        raise KeyNotRotatable(f"Key {api_key.key_id!r} is revoked: create a new key instead.")
    if api_key.replaced_by is not None:
        raise KeyNotRotatable(f"Key {api_key.key_id!r} was already rotated: its replacement is "
                              f"key {api_key.replaced_by!r}.")
    if api_key.expired(now):
        raise KeyNotRotatable(f"Key {api_key.key_id!r} expired at {api_key.expires_at.isoformat()}: "
                              "create a new key instead.")


def authenticate(key_string):
    """Return the live ApiKey a presented key string names; KeyRefused if none.

    Looked up in the database on every request (no per-process cache), so a
    revocation or an expiry is seen by every worker from the next request on.
    """
    parts = keys.split_key(key_string)
    if parts is None:
        raise KeyRefused(KeyRefused.INVALID, "The API key is unknown or revoked.")
    key_id, secret = parts
    api_key = ApiKey.get_or_none(ApiKey.key_id == key_id)
    if (api_key is None or api_key.revoked_at is not None
            or not keys.secret_matches(secret, api_key.secret_sha256)):
        raise KeyRefused(KeyRefused.INVALID, "The API key is unknown or revoked.")
    now = utcnow()
    if api_key.expired(now):
        replaced = (f" It was rotated: use its replacement, key {api_key.replaced_by}."
                    if api_key.replaced_by else "")
        raise KeyRefused(KeyRefused.EXPIRED,
                         f"The API key expired at {api_key.expires_at.isoformat()}.{replaced}")
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
    return {t for (t,) in Tenant.select(Tenant.tenant_id).where(Tenant.tenant_id.in_(tenant_ids) & LIVE).tuples()}
