"""Erasing a tenant: its calls, rollup cells, keys, budgets and webhooks go.

The layer `DELETE /v1/tenants/{tenant_id}` and `tenants erase` share. The
SQL is app/repository/erasure.py; the steps, in this order:

1. `begin`, one transaction: wait for the tenant's batches in flight to
   commit (later ones wait for this transaction), mark the tenant
   (`erasing_since`), revoke its keys, delete its webhook endpoints (their
   pending deliveries fail), and write the audit event `tenant.erase` with
   what the tenant holds. From its commit the tenant is unknown to every
   route and to ingestion (app/accounts.py), its keys answer 401, and no
   event reaches its endpoints: all at once, before any row is deleted.
2. Its calls, oldest first, in chunks (app/chunks.py): each its own short
   transaction, as `calls prune` does, so ingestion of other tenants waits
   at most a chunk on SQLite and never on PostgreSQL.
3. The model_day cells of its days, which hold every tenant's calls,
   recomputed from the calls that remain (a day and model per transaction,
   which on PostgreSQL locks only the cells it replaces:
   app/repository/rollups/model_days.py); then its own rollup cells, in
   chunks too, a grain at a time.
4. `remove_rest`, one transaction, waiting again for batches in flight: what a
   batch that passed its checks just before step 1 stored meanwhile
   (normally nothing), its budgets with their spend counters and alerts, its
   webhook events and endpoints with their deliveries, its keys, and last
   the tenant row. Then `rollups verify` holds: its calls and cells went
   together, and every other tenant's are untouched.

Resumable: a crash or an interruption anywhere leaves the tenant marked, so
rerunning the erasure (the same route, `tenants erase`, or `tenants erase
--pending`) skips step 1, writes no second audit event, and finds in steps 2
to 4 whatever is left. Until step 4 commits, answers of every tenant
(/v1/usage/all, its grand total) still count the calls not yet deleted.

The audit log keeps its events naming the tenant, the erasure's among them:
it is the record of what was administered, and holds no call.
"""
from dataclasses import dataclass, field

from . import audit, chunks
from .accounts import AccountError, UnknownTenant
from .db import database
from .db.locks import wait_for_ingestion
from .models import utcnow
from .repository import erasure as stored
from .repository import rollups

# DELETE /v1/tenants/{tenant_id} erases a tenant of at most this many calls
# before it answers (204): 100,000 took 6.3 s on SQLite and 2.8 s on
# PostgreSQL (2 cores), well within gunicorn's timeout (at least 60 s). A
# larger one it marks (step 1) and answers 202; `tenants erase` finishes.
SYNCHRONOUS_CALLS = 100_000


class OwnTenant(AccountError):
    """A key asked to erase the tenant it belongs to."""


@dataclass
class Erasure:
    """A tenant being erased: what it held when this run began (`tally`:
    calls, cells, keys, budgets, webhooks), whether an earlier run began it
    (`resumed`), and what this run deleted (`deleted`, once `complete`)."""

    tenant_id: str
    since: object
    tally: dict
    resumed: bool
    deleted: dict = field(default_factory=dict)


def begin(tenant_id):
    """Step 1 (or nothing, if an erasure of the tenant has begun): the Erasure.
    UnknownTenant if there is no such tenant, being erased or not."""
    with database.atomic():
        if stored.find(tenant_id) is None:
            raise UnknownTenant(f"Unknown tenant {tenant_id!r}.")
        wait_for_ingestion(tenant_id)
        tenant, tally, now = stored.find(tenant_id), stored.tally(tenant_id), utcnow()
        if tenant is None:  # erased by another run while this one waited
            raise UnknownTenant(f"Unknown tenant {tenant_id!r}.")
        resumed = not stored.mark(tenant_id, now)
        if not resumed:
            audit.record("tenant.erase", f"tenant:{tenant_id}", name=tenant.name, **tally)
    return Erasure(tenant_id, tenant.erasing_since or now, tally, resumed)


def complete(erasure, size=None, progress=None):
    """Steps 2 to 4 of a begun erasure; return it with `deleted` filled in.
    `size` and `progress` (called with the rows each chunk deleted) as for
    chunks.delete_all; an exception from `progress` stops the erasure
    there, resumable."""
    deleted = {"calls": chunks.delete_all(stored.calls_deleter(erasure.tenant_id).chunk, size, progress),
               "cells": 0}
    rollups.rebuild_model_days(stored.days_of(erasure.tenant_id))
    for deleter in stored.cells_deleters(erasure.tenant_id):
        deleted["cells"] += chunks.delete_all(deleter.chunk, size, progress)
    with database.atomic():
        wait_for_ingestion(erasure.tenant_id)
        rest = stored.remove_rest(erasure.tenant_id)
    erasure.deleted = {name: deleted.get(name, 0) + count for name, count in rest.items()}
    return erasure


def tally_of(tenant_id):
    """What the tenant holds now ({calls, cells, keys, budgets, webhooks});
    UnknownTenant if there is no such tenant, being erased or not."""
    if stored.find(tenant_id) is None:
        raise UnknownTenant(f"Unknown tenant {tenant_id!r}.")
    return stored.tally(tenant_id)


def erase(tenant_id, size=None, progress=None):
    """`begin` and `complete`: the whole erasure, or the rest of one begun."""
    return complete(begin(tenant_id), size, progress)


def being_erased():
    """The ids of the tenants whose erasure has begun and not completed."""
    return stored.being_erased()


def refuse_own(tenant_id, api_key):
    """OwnTenant if `api_key` belongs to `tenant_id`: erasing it would revoke the
    key making the request, and an admin could erase the only tenant holding
    admin keys. Another tenant's admin key, or the CLI, may."""
    if api_key.tenant_id == tenant_id:
        raise OwnTenant(f"This key belongs to tenant {tenant_id!r}, which it cannot erase: use an admin "
                        f"key of another tenant, or `flask --app wsgi tenants erase {tenant_id}`.")
