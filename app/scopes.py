"""What an API key may do: its scopes, in one place.

A key holds one or more scopes, and each route needs exactly one of them
(`auth.require_scope`); /v1/me and the OpenAPI description of every
operation say which. A key's *reach* is separate: a tenant key acts on its
own tenant only, a superuser key (`is_superuser`, only on tenants that allow
superusers) may reach every tenant. The scopes that read or administer every
tenant are for superuser keys only; `calls:write` on a superuser key records
calls for any tenant (the multi-tenant backend's key), on a tenant key for
its own.

Keys created without scopes keep the powers every key had before scopes
existed (migration 009 gave existing keys the same): a tenant key reads and
writes its tenant, a superuser key holds all four.
"""

USAGE_READ = "usage:read"
CALLS_WRITE = "calls:write"
ALL_READ = "all:read"
ADMIN = "admin"

# What each scope allows; the order is the canonical order keys list them in.
SCOPES = {
    USAGE_READ: "the key's own tenant's statistics, series and budgets",
    CALLS_WRITE: "recording calls, and the budget check before spending: for the key's own tenant, "
                 "or with a superuser key for any tenant",
    ALL_READ: "every tenant's statistics, series and budgets (superuser keys only)",
    ADMIN: "tenants, API keys, budgets, webhooks and the audit log (superuser keys only)",
}
# Scopes that act on every tenant: only a superuser key may hold them.
CROSS_TENANT = frozenset({ALL_READ, ADMIN})
TENANT_KEY_DEFAULT = (USAGE_READ, CALLS_WRITE)
SUPERUSER_KEY_DEFAULT = tuple(SCOPES)
# Scopes a dashboard does not need; it warns when its key holds one.
WRITING = frozenset({CALLS_WRITE, ADMIN})


class InvalidScopes(ValueError):
    """`str()` names what is wrong."""


def canonical(scopes):
    """`scopes` (any iterable of names) de-duplicated, in SCOPES order;
    InvalidScopes naming an unknown one, or none at all."""
    names = set(scopes)
    unknown = sorted(names - SCOPES.keys())
    if unknown:
        raise InvalidScopes(f"Unknown scope {unknown[0]!r}: the scopes are {', '.join(SCOPES)}.")
    if not names:
        raise InvalidScopes(f"A key needs at least one scope of {', '.join(SCOPES)}.")
    return tuple(name for name in SCOPES if name in names)


def for_new_key(scopes, is_superuser):
    """(scopes, is_superuser) of a new key from what its creator asked for.

    No scopes: the defaults of its kind. Scopes without `is_superuser`: a
    superuser key exactly when they include a cross-tenant scope. A tenant
    key asked for with a cross-tenant scope: InvalidScopes.
    """
    if scopes is None:
        return (SUPERUSER_KEY_DEFAULT if is_superuser else TENANT_KEY_DEFAULT), bool(is_superuser)
    scopes = canonical(scopes)
    cross_tenant = [name for name in scopes if name in CROSS_TENANT]
    if is_superuser is None:
        return scopes, bool(cross_tenant)
    if cross_tenant and not is_superuser:
        raise InvalidScopes(f"Scope {cross_tenant[0]!r} reaches every tenant: only a superuser key "
                            "may hold it (leave out is_superuser, or set it to true).")
    return scopes, bool(is_superuser)


def stored(scopes):
    """The api_key.scopes column's text: names in canonical order, space-separated."""
    return " ".join(canonical(scopes))
