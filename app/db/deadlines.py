"""Time limits on every database wait, so that a database that stops
answering costs a request a bounded wait and a 503, never a hung worker.

Connecting has a timeout (psycopg's connect_timeout); PostgreSQL cancels a
statement that runs too long (`statement_timeout`); for a server that cannot
even do that (stopped, or its host gone) a watchdog thread
(app/db/watchdog.py) cuts the connection when the client-side deadline
passes. `statistics_transaction` gives a repository method a longer limit
of its own, on both engines.
"""
import functools
import threading
import time
from contextlib import contextmanager, nullcontext

from peewee import PostgresqlDatabase, __exception_wrapper__

from . import watchdog
from .handle import Limits, database

# The client gives PostgreSQL this long beyond a limit before it cuts the
# connection: a live server cancels first, with a clean error and a
# connection the pool can hand out again.
CLIENT_GRACE = 1.0


def milliseconds(seconds):
    return max(1, round(seconds * 1000))


_transaction_limit = threading.local()  # .ends: monotonic time a statistics transaction must end by


def statistics_transaction(method):
    """Decorator for repository methods that compute statistics: their
    statements run in one transaction (one consistent snapshot) that may take
    DB_STATISTICS_TIMEOUT in all, instead of DB_STATEMENT_TIMEOUT per statement."""

    @functools.wraps(method)
    def limited(*args, **kwargs):
        with limited_transaction(database.limits.statistics):
            return method(*args, **kwargs)

    return limited


@contextmanager
def limited_transaction(seconds):
    """Run the enclosed statements in one snapshot transaction that ends within `seconds`.

    PostgreSQL: REPEATABLE READ, `statement_timeout` set to `seconds` for this
    transaction only (SET LOCAL), and the client-side deadline moved to the
    end of the transaction. SQLite (WAL: one snapshot per read transaction):
    a progress handler interrupts the statement running when time is up.
    Either way the caller sees OperationalError, which the app answers with 503.

    Nested in another limited transaction it adds nothing: the outer one's
    limit holds. Inside any other transaction it refuses, because SET LOCAL
    would outlive it and change the caller's limit.
    """
    if getattr(_transaction_limit, "ends", None) is not None:
        yield
        return
    db = database.obj
    if db.in_transaction():
        raise RuntimeError("limited_transaction() starts its own transaction; "
                           "call it outside database.atomic()")
    ends = time.monotonic() + seconds
    postgres = isinstance(db, PostgresqlDatabase)
    with db.atomic(**({"isolation_level": "REPEATABLE READ"} if postgres else {})):
        _transaction_limit.ends = ends
        try:
            if postgres:
                db.set_local("statement_timeout", milliseconds(seconds))
                yield
            else:  # SQLite, the only other engine open_database makes
                with _sqlite_interrupted_at(db.connection(), ends):
                    yield
        finally:
            _transaction_limit.ends = None


@contextmanager
def _sqlite_interrupted_at(conn, ends):
    """sqlite3 calls the handler every 1000 VM instructions; True interrupts the statement."""
    conn.set_progress_handler(lambda: time.monotonic() > ends, 1000)
    try:
        yield
    finally:
        conn.set_progress_handler(None, 0)


def execute_many(sql, seq_of_params):
    """Run `sql` once per parameter tuple; return the number of rows changed.

    Peewee has no executemany; this gives it what `database.execute_sql`
    gives a statement: driver errors become Peewee's (OperationalError is a
    503), and on PostgreSQL one statement deadline watches all the round
    trips, which psycopg pipelines.
    """
    db = database.obj
    if not seq_of_params:
        return 0
    with _watched(db), __exception_wrapper__:
        cursor = db.cursor()
        cursor.executemany(sql, seq_of_params)
        return cursor.rowcount


def fetch_all(query):
    """All rows of a Peewee query, as `fetch_sql` gives them."""
    db = database.obj
    if not isinstance(db, PostgresqlDatabase):
        return db.execute(query).fetchall()
    return fetch_sql(*query.sql())


def fetch_sql(sql, params=()):
    """All rows of a statement (which may write, e.g. RETURNING rows).
    PostgreSQL sends them in its binary format, so a bytea column arrives
    as bytes instead of hex text to decode (measured: 60 ms against 5 ms of
    query for 2,400 rows of sketches)."""
    db = database.obj
    if not isinstance(db, PostgresqlDatabase):
        return db.execute_sql(sql, params).fetchall()
    with _watched(db), __exception_wrapper__:
        cursor = db.connection().cursor(binary=True)
        cursor.execute(sql, params)
        return cursor.fetchall()


@contextmanager
def pipelined(statements, binary=False):
    """Run `statements` [(sql, params)], yielding a list that holds, once the
    block is over, the rows of each statement (a list per statement, in
    order; empty for one that returns none): the block must not need them. `binary`: PostgreSQL sends the
    rows in its binary format (bytea as bytes, as `fetch_sql`).

    PostgreSQL: they are sent at once in pipeline mode, and the block runs
    while the server executes them (Python work there costs no time); one
    statement deadline watches them and the block. SQLite: they run after
    the block, as `database.execute_sql` would run them; in a transaction
    the first write takes SQLite's one write lock, so the block then keeps
    no other writer waiting.
    """
    db = database.obj
    results = []
    if not isinstance(db, PostgresqlDatabase):
        yield results
        conn = db.connection()
        with __exception_wrapper__:
            results += [_sqlite_rows(conn, sql, params) for sql, params in statements]
        return
    with _watched(db), __exception_wrapper__:
        conn = db.connection()
        with conn.pipeline():
            cursors = [conn.cursor(binary=binary) for _ in statements]
            for cursor, (sql, params) in zip(cursors, statements):
                cursor.execute(sql, params)
            yield results
        # The pipeline's end received every result: a statement without rows has no description.
        results += [cursor.fetchall() if cursor.description else [] for cursor in cursors]


class EachRow(list):
    """SQLite: the parameters of a statement run once per row (executemany of
    one prepared statement). Its rows in `pipelined`: [(rows changed,)]."""


def _sqlite_rows(conn, sql, params):
    if isinstance(params, EachRow):
        return [(conn.executemany(sql, params).rowcount,)]
    return conn.execute(sql, params).fetchall()


def _watched(db):
    """The watchdog's deadline on `db`'s next round trips: PostgreSQL's
    (`_StatementDeadlines`); SQLite has none, its waits bounded by its busy
    timeout and, in statistics, by a progress handler."""
    return db._statement_deadline() if isinstance(db, _StatementDeadlines) else nullcontext()


class _StatementDeadlines:
    """Mixed into playhouse's pooled PostgreSQL database: every round trip
    (statements, BEGIN, COMMIT, ROLLBACK, and the pool's own check-out ping and
    check-in rollback) is watched by watchdog.WATCHDOG, which cuts the connection if no
    answer came by the deadline. The waiting thread then gets OperationalError,
    and the pool closes the broken connection instead of handing it out again.

    Deadlines: a statement gets DB_STATEMENT_TIMEOUT, a statement in a
    statistics transaction the end of that transaction; the pool's checks,
    which are a single quick round trip, get DB_CONNECT_TIMEOUT; each plus
    CLIENT_GRACE. Connecting is bounded by psycopg's connect_timeout.
    """

    def __init__(self, database, limits=Limits(), **kwargs):
        self.limits = limits
        super().__init__(database, **kwargs)

    def execute_sql(self, sql, params=None):
        with self._statement_deadline():
            return super().execute_sql(sql, params)

    def begin(self, *args, **kwargs):
        with self._statement_deadline():
            super().begin(*args, **kwargs)

    def commit(self):
        with self._statement_deadline(connect=False):
            super().commit()

    def rollback(self):
        with self._statement_deadline(connect=False):
            super().rollback()

    def set_local(self, name, value):
        """SET LOCAL `name` for the current transaction. Like BEGIN, session
        plumbing rather than a query: not logged, not counted as a statement."""
        with self._statement_deadline():
            self.cursor().execute("SELECT set_config(%s, %s, true)", (name, str(value)))

    def _is_closed(self, conn):
        with watchdog.WATCHDOG.deadline(self._check_deadline(), conn):
            closed = super()._is_closed(conn)
        if closed:
            self._close_raw(conn)  # playhouse drops it from the pool without closing it
        return closed

    def _can_reuse(self, conn):
        with watchdog.WATCHDOG.deadline(self._check_deadline(), conn):
            return super()._can_reuse(conn)

    def _check_deadline(self):
        return time.monotonic() + self.limits.connect + CLIENT_GRACE

    @contextmanager
    def _statement_deadline(self, connect=True):
        if self.is_closed():
            if not (connect and self.autoconnect):
                yield  # nothing to wait on: Peewee raises its "not open" error
                return
            self.connect()  # bounded by connect_timeout and the check-out deadline
        ends = getattr(_transaction_limit, "ends", None)
        if ends is None:
            ends = time.monotonic() + self.limits.statement
        with watchdog.WATCHDOG.deadline(ends + CLIENT_GRACE, self._state.conn):
            yield


@functools.cache
def with_deadlines(pooled_class):
    """The pooled class playhouse.db_url picks for the scheme, with deadlines."""
    return type(pooled_class.__name__ + "WithDeadlines", (_StatementDeadlines, pooled_class), {})
