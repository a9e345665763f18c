"""Deleting many rows without holding up ingestion: `delete_all`, for
`calls prune` (app/pruning.py) and erasing a tenant (app/erasure.py).

Every chunk is its own transaction (app/repository/deletes.py):

- SQLite has one write lock for the whole database, held by a chunk from
  its DELETE to COMMIT; a POSTed batch waits that long (at most
  SQLITE_BUSY_TIMEOUT). `ChunkSize` sizes each chunk from the time the
  previous one took, to about TARGET_SECONDS (a fifth of the ~1 s a writer
  may wait): rows deleted per second vary with the disk, the cache, WAL
  checkpoints and how the rows spread over the indexes, so no fixed size
  fits (one erasure of 100,000 calls on SQLite, 2 cores, busy: from 12,000
  to 47,000 rows a second, chunk to chunk).
  Between two chunks the lock is left free for WRITERS_TURN_SECONDS, as
  `calls import` does: writers waiting in their busy handler get their turn.
- PostgreSQL: a DELETE locks only the rows it deletes, which no INSERT of a
  new call waits for; chunks keep each transaction, its WAL and its
  statement (DB_STATEMENT_TIMEOUT) short. No pause between them.
"""
import time

from peewee import SqliteDatabase

from .db import database
from .ingest import WRITERS_TURN_SECONDS

TARGET_SECONDS = 0.2
FIRST_ROWS, FEWEST_ROWS, MOST_ROWS = 1000, 100, 10_000


class ChunkSize:
    """Rows per chunk: `rows`, adapted after each chunk unless `adapt` is False
    (tests fix it, to count statements)."""

    def __init__(self, rows=FIRST_ROWS, adapt=True):
        self.rows, self.adapt = rows, adapt

    def took(self, deleted, seconds):
        """A chunk deleted `deleted` rows in `seconds`: aim the next at TARGET_SECONDS,
        growing at most twofold a chunk (shrinking at once), within [FEWEST_ROWS, MOST_ROWS]."""
        if not self.adapt or deleted < self.rows:
            return
        aimed = self.rows * TARGET_SECONDS / max(seconds, 1e-6)
        self.rows = int(max(FEWEST_ROWS, min(MOST_ROWS, 2 * self.rows, aimed)))


def delete_all(chunk, size=None, progress=None):
    """Call `chunk(rows)` (one transaction deleting up to `rows` rows, returning
    how many it deleted) until a chunk deletes fewer than asked; return the
    total. `progress(deleted)` is called after each chunk, outside any
    transaction: what it does (or raises) leaves the chunks before committed."""
    size = size or ChunkSize()
    total = 0
    while True:
        asked, started = size.rows, time.monotonic()
        deleted = chunk(asked)
        size.took(deleted, time.monotonic() - started)
        total += deleted
        if progress is not None:
            progress(deleted)
        if deleted < asked:
            return total
        if isinstance(database.obj, SqliteDatabase):
            time.sleep(WRITERS_TURN_SECONDS)
