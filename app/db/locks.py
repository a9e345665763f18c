"""Lock rules beyond a statement's own: writes that may be skipped rather
than waited for (`write_unless_locked`), and waiting for a tenant's batches
in flight (`wait_for_ingestion`)."""
import sqlite3
from contextlib import contextmanager

import psycopg
from peewee import OperationalError, SqliteDatabase

from .handle import database


def write_unless_locked(write):
    """Run `write()` in a transaction of its own if the locks it needs are free
    now: True if it committed, False (nothing written) if another connection
    holds one of them.

    For writes a request can do without, such as refreshing a key's
    `last_used_at`: waiting would make even a read queue behind any writer
    (on SQLite, behind whichever connection holds the database's one write
    lock) and fail when the busy timeout runs out. SQLite tries with a busy
    timeout of 0, restored afterwards; PostgreSQL with `lock_timeout` of 1 ms
    for this transaction only (0 would mean no limit at all).
    """
    db = database.obj
    if db.in_transaction():
        raise RuntimeError("write_unless_locked() needs a transaction of its own")
    try:
        if isinstance(db, SqliteDatabase):
            with _sqlite_busy_timeout(db, 0), db.atomic():
                write()
        else:  # PostgreSQL, the only other engine open_database makes
            with db.atomic():
                db.set_local("lock_timeout", "1ms")
                write()
    except OperationalError as error:
        if _lock_is_busy(error):
            return False
        raise
    return True


def wait_for_ingestion(tenant_id):
    """Inside the caller's transaction: let the tenant's batches in flight
    commit first, and make later ones wait until this transaction ends. So
    a batch either committed before what the caller reads, or sees what the
    caller wrote (budgets: its spend and alerts, app/budgets/service.py;
    erasure: the tenant marked, app/erasure.py).

    PostgreSQL: every batch's INSERT holds a KEY SHARE lock on its tenant's
    row (the foreign key) until COMMIT, which FOR UPDATE waits for and
    blocks. SQLite: the database's one write lock, taken now with an empty
    write (a batch holds it from its first INSERT to COMMIT)."""
    db = database.obj
    if not db.in_transaction():
        raise RuntimeError("wait_for_ingestion() holds its lock until the caller's transaction ends; "
                           "call it inside database.atomic()")
    if isinstance(db, SqliteDatabase):
        db.execute_sql("DELETE FROM tenant WHERE 0 = 1")
    else:  # PostgreSQL, the only other engine open_database makes
        db.execute_sql("SELECT 1 FROM tenant WHERE tenant_id = %s FOR UPDATE", (tenant_id,))


@contextmanager
def _sqlite_busy_timeout(db, milliseconds):
    """The connection's busy timeout set to `milliseconds` for the enclosed block."""
    (previous,) = db.execute_sql("PRAGMA busy_timeout").fetchone()
    db.execute_sql(f"PRAGMA busy_timeout = {int(milliseconds)}")
    try:
        yield
    finally:
        db.execute_sql(f"PRAGMA busy_timeout = {int(previous)}")


def _lock_is_busy(error):
    """Was `error` (Peewee's, wrapping the driver's as `orig`) a lock held elsewhere?"""
    original = getattr(error, "orig", None)
    if isinstance(original, sqlite3.OperationalError):
        return original.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
    return isinstance(original, psycopg.errors.LockNotAvailable)
