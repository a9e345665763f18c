"""The database handle every model binds to, and the settings that shape it.

Models bind to the `database` proxy; `create_app` points it at the database
`connect.open_database` makes of DATABASE_URL. Connections open lazily on the
first query of a request and are closed (returned to the pool, for
PostgreSQL) when the request ends.
"""
from typing import NamedTuple

from peewee import DatabaseProxy, PostgresqlDatabase

database = DatabaseProxy()


def bound_datetime(naive):
    """A naive UTC datetime as a statement parameter: on SQLite the text that
    sqlite3's default adapter makes of it (`isoformat(" ")`, what every
    stored timestamp holds), written here because the adapter is a Python
    call per value, 3.9 ms of the 2000 timestamps of a 1000-call INSERT;
    on PostgreSQL the datetime itself."""
    return naive if isinstance(database.obj, PostgresqlDatabase) else naive.isoformat(" ")


class ConfigurationError(ValueError):
    """A setting from the environment that cannot work; `str()` names it."""


class Limits(NamedTuple):
    """Time limits in seconds; `create_app` reads them from DB_CONNECT_TIMEOUT,
    DB_STATEMENT_TIMEOUT and DB_STATISTICS_TIMEOUT."""

    connect: float = 2  # opening a connection (psycopg: whole seconds, at least 2)
    statement: float = 10  # each statement outside a statistics transaction
    statistics: float = 30  # a whole statistics transaction (`statistics_transaction`)
