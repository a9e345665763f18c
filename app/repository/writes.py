"""Ingestion: bulk, idempotent inserts of llm_call rows."""
from peewee import chunked

from ..db import database
from ..models import LlmCall

# Rows per INSERT: 13 parameters a row stays well under SQLite's 32,766 limit.
INSERT_CHUNK = 500


def add_calls(rows):
    """Insert call rows (dicts of LlmCall columns) in one transaction, all
    or nothing; return (created, duplicates).

    A row whose (tenant, call_id) is already stored is skipped by the
    database's unique index (INSERT ... ON CONFLICT DO NOTHING), so
    concurrent retries of one batch cannot double count. Runs inside the
    caller's transaction when there is one.

    The statements are built before the transaction begins: SQLite holds
    its one write lock from the first INSERT to COMMIT, and Peewee takes
    longer to build an INSERT than SQLite takes to run it (measured: 7,500
    against 13,000 rows/s), so building inside would more than double the
    time every other writer waits.
    """
    statements = [_insert_ignoring_duplicates(chunk) for chunk in chunked(rows, INSERT_CHUNK)]
    created = 0
    with database.atomic():
        for _, (sql, params) in statements:
            created += database.execute_sql(sql, params).rowcount
    return created, sum(size for size, _ in statements) - created


def _insert_ignoring_duplicates(rows):
    """(len(rows), (sql, params)) of one INSERT ... ON CONFLICT DO NOTHING."""
    query = (LlmCall
             .insert_many(rows)
             .on_conflict(action="NOTHING",
                          conflict_target=[LlmCall.tenant, LlmCall.call_id]))
    return len(rows), query.sql()
