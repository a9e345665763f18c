"""The database handle every model binds to, and the settings that shape it.

Models bind to the `database` proxy; `create_app` points it at the database
`connect.open_database` makes of DATABASE_URL. Connections open lazily on the
first query of a request and are closed (returned to the pool, for
PostgreSQL) when the request ends.
"""
from typing import NamedTuple

from peewee import DatabaseProxy

database = DatabaseProxy()


class ConfigurationError(ValueError):
    """A setting from the environment that cannot work; `str()` names it."""


class Limits(NamedTuple):
    """Time limits in seconds; `create_app` reads them from DB_CONNECT_TIMEOUT,
    DB_STATEMENT_TIMEOUT and DB_STATISTICS_TIMEOUT."""

    connect: float = 2  # opening a connection (psycopg: whole seconds, at least 2)
    statement: float = 10  # each statement outside a statistics transaction
    statistics: float = 30  # a whole statistics transaction (`statistics_transaction`)
