"""What kind of failure a database error is, for metrics: a time limit that
ran out (`timeout`), or anything else (`error`: refused, lost, missing)."""
import sqlite3

import psycopg

TIMEOUT, ERROR = "timeout", "error"

# SQLite: the busy timeout ran out waiting for the write lock, or the
# statistics deadline interrupted a statement (deadlines.py).
_SQLITE_TIMEOUTS = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_INTERRUPT)
# PostgreSQL: statement_timeout (QueryCanceled) or lock_timeout.
_POSTGRES_TIMEOUTS = (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable)


def kind(error):
    """TIMEOUT or ERROR for a Peewee error (the driver's is its `orig`) or a driver error."""
    if getattr(error, "deadline_passed", False):  # the watchdog cut the round trip
        return TIMEOUT
    original = getattr(error, "orig", error)
    if isinstance(original, _POSTGRES_TIMEOUTS):
        return TIMEOUT
    if isinstance(original, psycopg.OperationalError) and "timeout expired" in str(original):
        return TIMEOUT  # connect_timeout (DB_CONNECT_TIMEOUT)
    code = getattr(original, "sqlite_errorcode", None) or 0  # primary code in the low byte
    if isinstance(original, sqlite3.Error) and code & 0xFF in _SQLITE_TIMEOUTS:
        return TIMEOUT
    return ERROR
