"""How a DATABASE_URL becomes a Peewee database, with every wait bounded.

SQLite (`sqlite:///path`) runs with the pragmas below; PostgreSQL URLs get a
connection pool whose sessions carry `work_mem` and `statement_timeout`, and
whose round trips carry the client-side deadlines of `deadlines`.

Both keep their connections open between requests, one pool per worker
(playhouse.pool). For SQLite that is what keeps a write cheap: the last
connection to close checkpoints the WAL into the database and deletes it,
and a new one reads the schema again; a POSTed backfill batch of 1000 calls
took 223 ms with a connection per request, 189 ms pooled (1M calls, 2 cores).
An idle pooled connection holds no lock: the pool rolls back any transaction
left open when a request returns it.
"""
import math
import os
from urllib.parse import urlsplit, urlunsplit

from playhouse.db_url import connect, parse, schemes

from .deadlines import milliseconds, with_deadlines
from .handle import ConfigurationError, Limits


def sqlite_pragmas():
    """The pragmas of every SQLite connection, from the environment.

    SQLite is shared by several gunicorn workers: WAL lets readers run beside
    the single writer, and busy_timeout (SQLITE_BUSY_TIMEOUT, ms) makes a
    writer wait for the lock instead of failing. synchronous=full
    (SQLITE_SYNCHRONOUS) syncs the WAL on every commit, so a batch answered
    201 survives a power cut or an OS crash; with normal it is synced only at
    checkpoints, and the last commits can roll back. Measured (make bench,
    100,000 calls, 2 cores): batches of 1000 POSTed at about 2,050 calls/s
    instead of 2,170 (-5%); the fsync costs 0.4-1.7 ms a commit here, which
    only tiny transactions would feel.
    """
    synchronous = os.environ.get("SQLITE_SYNCHRONOUS", "full").lower()
    if synchronous not in ("normal", "full", "extra"):  # SQLite would read a typo as NORMAL
        raise ConfigurationError(f"SQLITE_SYNCHRONOUS must be normal, full or extra, not {synchronous!r}")
    busy = os.environ.get("SQLITE_BUSY_TIMEOUT", "10000")
    if not busy.isdigit():
        raise ConfigurationError(f"SQLITE_BUSY_TIMEOUT must be a whole number of milliseconds, not {busy!r}")
    return {"journal_mode": "wal", "busy_timeout": int(busy), "foreign_keys": 1, "synchronous": synchronous}


# Statistics sort every value of the window (percentiles are exact); with
# PostgreSQL's default 4 MB those sorts spill to disk. Measured on 1M calls:
# the all-tenant, all-history answer takes 10 s at 4 MB and about 3 s at 64 MB.
# A URL's own `options` (e.g. `?options=-c%20work_mem%3D16MB`) come after these
# and win for each setting they name.
POSTGRES_OPTIONS = "-c work_mem=64MB -c jit=off"


# The URL schemes the service runs on, and the pooled playhouse scheme each
# becomes: every PostgreSQL URL gets a connection pool (one per worker).
POSTGRES_SCHEMES = {"postgres": "postgresql+pool", "postgresql": "postgresql+pool",
                    "postgresql+psycopg": "postgresql+pool", "postgres+pool": "postgresql+pool",
                    "postgresql+pool": "postgresql+pool"}


def open_database(url, limits=Limits()):
    """Return a Peewee database for `url` (playhouse.db_url syntax) with `limits`.

    SQLite (`sqlite:///path`) and PostgreSQL (`postgresql://`, also written
    `postgres://` or SQLAlchemy's `postgresql+psycopg://`) are supported; any
    other scheme is refused by name.
    """
    parts = urlsplit(url)
    if parts.scheme in POSTGRES_SCHEMES:
        db = _open_postgres(parts._replace(scheme=POSTGRES_SCHEMES[parts.scheme]), limits)
    elif parts.scheme == "sqlite":
        # One request at a time uses a connection, in whichever thread serves it.
        db = connect("sqlite+pool" + url[len("sqlite"):], pragmas=sqlite_pragmas(),
                     check_same_thread=False, max_connections=20, stale_timeout=300)
    else:
        raise ConfigurationError(
            f"DATABASE_URL scheme {parts.scheme!r} is not supported: use "
            "sqlite:///path/to/usage.db or postgresql://user@host:5432/dbname.")
    db.limits = limits
    return db


def _open_postgres(parts, limits):
    """A pooled PostgreSQL database with deadlines on every round trip.

    Sessions start with work_mem and statement_timeout (in `options`); options
    in the URL come after ours, so a setting named there wins. A
    `connect_timeout` in the URL wins over DB_CONNECT_TIMEOUT.
    """
    params = parse(urlunsplit(parts))
    session = f"{POSTGRES_OPTIONS} -c statement_timeout={milliseconds(limits.statement)}"
    params["options"] = " ".join(filter(None, [session, params.get("options")]))
    params.setdefault("connect_timeout", max(2, math.ceil(limits.connect)))
    return with_deadlines(schemes[parts.scheme])(limits=limits, max_connections=20,
                                                  stale_timeout=300, **params)
