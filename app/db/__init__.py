"""The database: the handle models bind to, how a DATABASE_URL opens it, and
the time limits and lock rules of every wait on it.

- `handle`: the `database` proxy, `Limits`, `ConfigurationError`, `bound_datetime`;
- `connect`: DATABASE_URL -> a Peewee database (SQLite pragmas, PostgreSQL pool);
- `deadlines`: statement timeouts, the watchdog, `statistics_transaction`,
  `execute_many`, `fetch_all`, `fetch_sql`, `pipelined` (and its `EachRow`);
- `locks`: `write_unless_locked`, for writes a request can do without, and
  `wait_for_ingestion`, for a tenant's batches in flight;
- `failures`: whether a database error was a timeout, for the metrics.
"""
from .connect import POSTGRES_OPTIONS, open_database, sqlite_pragmas
from .deadlines import (EachRow, execute_many, fetch_all, fetch_sql, limited_transaction, pipelined,
                        statistics_transaction)
from .handle import ConfigurationError, Limits, bound_datetime, database
from .locks import write_unless_locked

__all__ = ["ConfigurationError", "EachRow", "Limits", "POSTGRES_OPTIONS", "bound_datetime", "database", "execute_many",
           "fetch_all", "fetch_sql", "limited_transaction", "open_database", "pipelined", "sqlite_pragmas",
           "statistics_transaction", "write_unless_locked"]
