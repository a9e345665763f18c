"""Ingestion: bulk, idempotent inserts of llm_call rows, and their rollups."""
import functools
from collections import Counter
from operator import itemgetter
from typing import NamedTuple

from peewee import PostgresqlDatabase

from ..db import EachRow, bound_datetime, database, pipelined
from ..models import LlmCall, utcnow
from ..rollups import MONTH_GRAINS
from ..budgets import alerts as budget_alerts
from . import rollups
from .arrays import array

# The columns an INSERT sets, in the order of its parameters (`id` is the
# database's), each with its PostgreSQL type; `_insert_ignoring_duplicates`
# builds each row's parameters in this order.
INSERTED = ((LlmCall.call_id, "uuid"), (LlmCall.tenant, "text"), (LlmCall.operation, "text"),
            (LlmCall.timestamp, "timestamp"), (LlmCall.call_duration_ms, "integer"),
            (LlmCall.model, "text"), (LlmCall.input_tokens, "integer"),
            (LlmCall.output_tokens, "integer"), (LlmCall.cost_micro_usd, "bigint"),
            (LlmCall.status, "text"), (LlmCall.error_class, "text"), (LlmCall.created_at, "timestamp"))
UNIQUE = (LlmCall.tenant, LlmCall.call_id)
# One order for every transaction's rows: (tenant_id, call_id), as parameters.
_LOCK_ORDER = itemgetter(1, 0)


class Added(NamedTuple):
    """What add_calls did: rows stored, rows skipped as duplicates, and both
    per tenant ({tenant_id: (created, duplicates)}, for the metrics)."""

    created: int
    duplicates: int
    by_tenant: dict


def add_calls(rows):
    """Insert call rows (dicts of LlmCall columns but `created_at`) in one
    transaction, all or nothing; return what it `Added`.

    A row whose (tenant, call_id) is already stored is skipped by the
    database's unique index (INSERT ... ON CONFLICT DO NOTHING), so
    concurrent retries of one batch cannot double count. Runs inside the
    caller's transaction when there is one.

    The rows are inserted in (tenant_id, call_id) order: PostgreSQL locks
    each new key of the unique index until COMMIT, and a transaction
    inserting a key another one holds waits for it, so two overlapping
    batches taking their keys in different orders could deadlock.

    The statements are built before the transaction begins: SQLite holds
    its one write lock from the first INSERT to COMMIT, so building them
    inside would add to the time every other writer waits. The cells are
    built from every row while PostgreSQL runs the INSERT, or before SQLite
    takes its lock (`pipelined`): a batch is mostly new calls, and its 5 ms
    of cell building then cost nothing; the same goes for the costs it adds
    to budgets, whose budgets are read in the same round trip, right after
    the INSERT. When some rows were not stored (a retry), the cells and
    costs are worked out again from those that were. Then each step's
    Python runs while the database does the step before: the costs are
    summed per budget while it writes the cells, and the cells' sketches
    merged (`rollups.compacted`) while it adds the costs to the budgets'
    counters. The costs count against their tenants' budgets, and the
    thresholds they cross fire, in the same transaction
    (app/budgets/alerts.py).

    Month and tenant_month cells are written only for calls of sealed months, read in the
    same round trip (`rollups.sealing_statements`); after the first batch
    of a new month commits, it seals the month that ended (`rollups.seal`).
    """
    statements = _insert_ignoring_duplicates(rows)
    budgets_read = budget_alerts.budgets_statement({row["tenant"] for row in rows})
    lock, read_sealed = rollups.sealing_statements()
    open_grains = rollups.open_grains()
    with database.atomic():
        with pipelined([*lock, *statements, read_sealed, budgets_read]) as results:
            open_cells, costs = rollups.cells_of(rows, open_grains), budget_alerts.costs_of(rows)
        *_, sealed_rows, budgets = results
        created = _created_keys(statements, results[len(lock):len(lock) + len(statements)])
        stored = rows if len(created) == len(rows) else _created_rows(rows, created)
        if stored is not rows:
            open_cells, costs = rollups.cells_of(stored, open_grains), budget_alerts.costs_of(stored)
        sealed_before = rollups.sealed_before_of(sealed_rows)
        late = [row for row in stored if row["timestamp"] < sealed_before]
        cells = open_cells.joined(rollups.cells_of(late, MONTH_GRAINS)) if late else open_cells
        with pipelined(rollups.cell_writes(cells), binary=True) as cells_written:
            spent = budget_alerts.tally(costs, budgets)
            counter_writes = budget_alerts.counter_writes(spent)
        with pipelined(counter_writes) as counters_written:
            compacted = rollups.compacted(cells_written)
        rollups.write_compacted(compacted)
        budget_alerts.count(spent, counters_written)
    if rollups.seal_due(sealed_before) and not database.in_transaction():
        rollups.seal()
    received = Counter(row["tenant"] for row in rows)
    stored = Counter(tenant_id for tenant_id, _ in created)
    return Added(len(created), len(rows) - len(created),
                 {tenant_id: (stored[tenant_id], count - stored[tenant_id]) for tenant_id, count in received.items()})


def _created_keys(statements, inserted):
    """[(tenant_id, call_id)] of the rows the INSERT statements stored: those
    they returned (PostgreSQL), or (SQLite, one executemany) every row when
    as many were stored as sent, else the last `changed` rows of the table:
    SQLite gives each new row an id above every stored one, and this
    transaction is its one writer."""
    if isinstance(database.obj, PostgresqlDatabase) or not statements:
        return [key for keys in inserted for key in keys]
    (_, params), ((changed,),) = statements[0], inserted[0]
    if changed == len(params):
        return [_LOCK_ORDER(row) for row in params]
    return list(LlmCall.select(LlmCall.tenant, LlmCall.call_id).order_by(LlmCall.id.desc())
                .limit(changed).tuples())


def _created_rows(rows, created):
    """The rows whose (tenant_id, call_id) the INSERT returned: those it
    stored. Of rows repeating a key, the first was stored (lock order is stable).
    Keys are compared as the database holds them: call_id as 32 hex digits
    (PostgreSQL returns a UUID, SQLite the text)."""
    created = {(tenant_id, call_id if isinstance(call_id, str) else call_id.hex) for tenant_id, call_id in created}
    hex_of = LlmCall.call_id.db_value
    found = []
    for row in rows:
        key = (row["tenant"], hex_of(row["call_id"]))
        if key in created:
            created.discard(key)
            found.append(row)
    return found


def _insert_ignoring_duplicates(rows):
    """[(sql, params)]: INSERT ... ON CONFLICT DO NOTHING statements of
    `rows`, in lock order; on PostgreSQL RETURNING the (tenant_id, call_id)
    of the rows stored.

    Not Peewee's insert_many, whose 1000-row statements took ~100 ms to
    build, and psycopg ~50 ms more to turn their 12,000 `%s` into `$n`:
    more than PostgreSQL takes to store the rows (issue 10). PostgreSQL gets
    one short statement whatever the number of rows, its 12 parameters the
    columns as arrays (`unnest` yields them in order): measured on 1000 rows
    into 1M, about 30% faster than the one-row INSERT run for each row,
    pipelined (executemany, the raw baseline of bench/bench.py). SQLite gets
    the one-row INSERT run for each row (`EachRow`: executemany of one
    prepared statement), without RETURNING, which executemany cannot give
    (`_created_keys` finds the rows stored): 1000 rows took 39 ms against
    49 ms as two INSERTs of 500 rows' VALUES with RETURNING.
    The values are those Peewee would send: call_id and timestamp through
    their fields' db_value (hex, naive UTC; `bound_datetime`); the others
    are the validated str and int values, which Peewee sends unchanged.
    """
    call_id, naive = LlmCall.call_id.db_value, LlmCall.timestamp.db_value
    created_at = bound_datetime(LlmCall.created_at.db_value(utcnow()))
    params = sorted(  # in INSERTED order
        ((call_id(row["call_id"]), row["tenant"], row["operation"], bound_datetime(naive(row["timestamp"])),
          row["call_duration_ms"], row["model"], row["input_tokens"], row["output_tokens"],
          row["cost_micro_usd"], row["status"], row["error_class"], created_at) for row in rows),
        key=_LOCK_ORDER)
    if not params:
        return []
    if isinstance(database.obj, PostgresqlDatabase):
        return [(_unnest_sql(), [array(pg_type, column) for (_, pg_type), column in zip(INSERTED, zip(*params))])]
    return [(_each_row_sql(), EachRow(params))]


def _into():
    columns = ", ".join(f'"{field.column_name}"' for field, _ in INSERTED)
    return f'INSERT INTO "{LlmCall._meta.table_name}" ({columns})'


def _ignoring_duplicates():
    unique = ", ".join(f'"{field.column_name}"' for field in UNIQUE)
    return f"ON CONFLICT ({unique}) DO NOTHING"


@functools.cache
def _unnest_sql():
    arrays = ", ".join(f"%b::{pg_type}[]" for _, pg_type in INSERTED)  # binary: no text escaping
    unique = ", ".join(f'"{field.column_name}"' for field in UNIQUE)
    return f"{_into()} SELECT * FROM unnest({arrays}) {_ignoring_duplicates()} RETURNING {unique}"


@functools.cache
def _each_row_sql():
    return f"{_into()} VALUES ({', '.join(['?'] * len(INSERTED))}) {_ignoring_duplicates()}"
