"""The watchdog thread that cuts a database connection still waiting at its
deadline (app/db/deadlines.py arms it around every PostgreSQL round trip)."""
import logging
import os
import socket
import threading
import time
from contextlib import contextmanager

import psycopg

from ..request_context import current_id as current_request_id

logger = logging.getLogger(__name__)


class Watchdog:
    """Cuts the connection of a round trip still waiting at its deadline.

    Why: a PostgreSQL that is stopped (SIGSTOP, a hung VM, a frozen disk)
    never runs its statement_timeout, and its kernel still ACKs TCP, so
    keepalives and tcp_user_timeout see nothing wrong: psycopg would wait for
    ever, until gunicorn kills the worker and the client gets no response.

    How: one daemon thread per process keeps the armed deadlines; at a
    deadline it shuts the connection's socket down (through a duplicate file
    descriptor, so psycopg still owns and closes the original). libpq then
    sees end-of-file and psycopg raises OperationalError in the waiting thread.
    Disarming takes the same lock as firing, so a round trip that ended in time
    is never cut afterwards.

    Why not SIGALRM: a signal reaches only the main thread, while requests also
    run in other threads (Flask's test client and dev server, threaded gunicorn
    workers, the readiness probe), and one alarm per process cannot serve
    several deadlines. A thread works from anywhere and costs two lock
    acquisitions per round trip.
    """

    def __init__(self):
        self._lock = threading.Condition()
        self._armed = {}  # token -> (deadline, psycopg connection)
        self._wakes_at = None  # the deadline the thread sleeps until; None: nothing armed
        self._thread = None

    @contextmanager
    def deadline(self, ends, conn):
        """Cut `conn` if the enclosed block is still running at monotonic time `ends`;
        the error the block then raises gets `deadline_passed` (a timeout, in the metrics)."""
        token = object()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="db-watchdog", daemon=True)
                self._thread.start()
            # The request id goes with it: the cut is logged from the watchdog's thread.
            self._armed[token] = (ends, conn, current_request_id())
            if self._wakes_at is None or ends < self._wakes_at:
                self._lock.notify()
        try:
            yield
        except Exception as error:
            with self._lock:
                if self._armed.pop(token, None) is None:
                    error.deadline_passed = True
            raise
        finally:
            with self._lock:
                self._armed.pop(token, None)

    def _run(self):
        with self._lock:
            while True:
                now = time.monotonic()
                for token, (ends, conn, request_id) in list(self._armed.items()):
                    if ends <= now:
                        del self._armed[token]
                        _cut(conn, request_id)
                self._wakes_at = min((ends for ends, _, _ in self._armed.values()), default=None)
                self._lock.wait(None if self._wakes_at is None else self._wakes_at - now)


def _cut(conn, request_id):
    """Shut the connection's socket down so that the thread waiting on it fails now."""
    logger.warning("database: no answer by the deadline; cutting the connection",
                   extra={"request_id": request_id})
    try:
        with socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except (OSError, psycopg.Error):
        pass  # already closed: the waiting thread has its error


WATCHDOG = Watchdog()


def _new_watchdog_after_fork():
    """A forked child (a gunicorn worker) has none of the parent's threads, and
    the lock may have been held at the fork: start over."""
    global WATCHDOG
    WATCHDOG = Watchdog()


os.register_at_fork(after_in_child=_new_watchdog_after_fork)
