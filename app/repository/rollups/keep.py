"""Keeping cells with the calls: `add`, in the transaction that stores them."""
from peewee import PostgresqlDatabase

from ...db import database, execute_many
from ...rollups import METRICS, CellBuilder, merged
from .cells import KEY_COLUMNS, NUMBERS, SKETCHES, insert_rows, key_of, key_params, numbers_of, unnest, update_rows


def add(created_rows):
    """Add calls just inserted (dicts of LlmCall fields) to their cells, inside
    the caller's transaction, so the cells change if and only if the calls are
    stored.

    Three statements on PostgreSQL whatever the number of cells (one short
    statement per cell on SQLite, in-process): insert the cells missing, as
    empty ones; read and lock every cell; write the sums computed here.
    Concurrent batches touching the same cells wait for each other (see
    `_stored_or_empty`), so none of their additions is lost. (SQLite has
    one writer at a time.)
    """
    builder = CellBuilder()
    for row in created_rows:
        builder.add(row)
    cells = builder.cells()
    if not cells:
        return
    keys = sorted(cells)
    stored = _stored_or_empty(keys, cells)
    fresh = builder.sketches()
    sketches = merged(fresh, {key: row[len(NUMBERS) + 1:] for key, row in stored.items()})
    updates = []
    for key in keys:
        row_id, *numbers = stored[key][:len(NUMBERS) + 1]
        cell = cells[key]
        cell.add(numbers[0], numbers[1], numbers[2::3], numbers[3::3], numbers[4::3])
        updates.append([*numbers_of(cell), *sketches[key], row_id])
    update_rows(updates)


def _stored_or_empty(keys, cells):
    """{key: (id, numbers..., sketches...)} of each cell as stored, locked
    until COMMIT; an empty cell (no calls, the minima and maxima of the
    cell's new calls) is inserted first where there was none.

    Locks are taken in one order (the keys', then the index's), so
    concurrent batches wait for each other instead of deadlocking: the
    INSERT waits only for cells another batch is inserting, and that batch
    holds no lock a later key of ours needs."""
    rows = []
    for key in keys:
        cell = cells[key]
        empty = [0, 0]
        for i in range(len(METRICS)):
            empty += [0, cell.mins[i], cell.maxs[i]]
        rows.append(key_params(key) + empty + [b""] * len(SKETCHES))
    insert_rows(rows, f" ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO NOTHING")
    columns = ", ".join(KEY_COLUMNS + ["id"] + NUMBERS + SKETCHES)
    width = len(KEY_COLUMNS)
    if isinstance(database.obj, PostgresqlDatabase):
        source, params = unnest(KEY_COLUMNS, [row[:width] for row in rows])
        found = database.execute_sql(
            f"SELECT {columns} FROM usage_rollup WHERE ({', '.join(KEY_COLUMNS)}) IN"
            f" (SELECT * FROM {source}) ORDER BY {', '.join(KEY_COLUMNS)} FOR UPDATE", params).fetchall()
    else:
        condition = " AND ".join(f"{name} = ?" for name in KEY_COLUMNS)
        found = execute_many(f"SELECT {columns} FROM usage_rollup WHERE {condition}",
                             [row[:width] for row in rows], returning=True)
    return {key_of(row[:width]): tuple(row[width:]) for row in found}
