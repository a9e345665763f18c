"""The usage_rollup table: its columns, and writing rows of cells in bulk."""
from peewee import PostgresqlDatabase, chunked

from ...cell_builder import CellTable
from ...db import bound_datetime, database, execute_many
from ...models import UsageRollup
from ...day_tails import TAILED
from ...rollups import KEY, METRICS, MODEL_DAY, QUARTER_BLOBS, TAIL_NUMBERS
from ..arrays import array


NUMBERS = ["calls", "cost_micro_usd"] + [f"{m}_{s}" for m in METRICS for s in ("sum", "min", "max")]
METRIC_SKETCHES = [f"{m}_sketch" for m in METRICS]
SKETCHES = METRIC_SKETCHES + [TAIL_NUMBERS] + list(QUARTER_BLOBS)  # every blob, in the order of CellTable.sketches
KEY_COLUMNS = ["grain", "cell_start", *KEY]


# Column types, for PostgreSQL's unnest of one array per column.
TYPES = {"grain": "text", "cell_start": "timestamp", "id": "bigint",
         **{name: "text" for name in KEY}, **{name: "bigint" for name in NUMBERS},
         **{name: "bytea" for name in SKETCHES}}
COLUMNS = KEY_COLUMNS + NUMBERS + SKETCHES
# Rows per SQLite INSERT: 26 parameters a row at most stay well under its 32,766 limit.
SQLITE_CHUNK = 500


def unnest(names, columns):
    """PostgreSQL: (`unnest(...)` of one binary array per column of `names`,
    its parameters: `columns`, a sequence of values each). unnest yields the
    rows in order."""
    arrays = ", ".join(f"%b::{TYPES[name]}[]" for name in names)
    return f"unnest({arrays})", [array(TYPES[name], column) for name, column in zip(names, columns)]


def insert_statements(table, suffix=""):
    """[(sql, params)]: INSERT the cells of a CellTable + `suffix`, in the
    table's order.

    PostgreSQL: one statement reading one array per column (unnest), which
    keeps the rows' order; thousands of single-row statements, even
    pipelined, took 4 times as long. SQLite: multi-row VALUES, SQLITE_CHUNK
    rows a statement."""
    if not table.keys:
        return []
    names = COLUMNS[:len(KEY_COLUMNS) + len(NUMBERS) + len(table.sketches)]  # the quarter hours' if there
    grains, starts, *key = zip(*table.keys)
    stored = {start: bound_datetime(UsageRollup.cell_start.db_value(start)) for start in set(starts)}  # a few
    columns = [grains, [stored[start] for start in starts], *key, *table.numbers, *table.sketches]
    if isinstance(database.obj, PostgresqlDatabase):
        source, params = unnest(names, columns)
        return [(f"INSERT INTO usage_rollup ({', '.join(names)}) SELECT * FROM {source}{suffix}", params)]
    placeholders = f"({', '.join(['?'] * len(names))})"
    return [(f"INSERT INTO usage_rollup ({', '.join(names)}) VALUES "
             f"{', '.join([placeholders] * len(chunk))}{suffix}", [value for row in chunk for value in row])
            for chunk in chunked(zip(*columns), SQLITE_CHUNK)]


def _parts(table):
    """The cells of a CellTable in three, each with the blobs its cells hold
    (`blobs_of`): the upsert of the others leaves them as they are (empty),
    and binding and concatenating two empty blobs more for each of a
    backfill batch's 1,300 cells took about 4% of its time on SQLite."""
    counts = [blobs_of(key[0]) for key in table.keys]

    def part(wanted):
        rows = [i for i, count in enumerate(counts) if count == wanted]
        return CellTable([table.keys[i] for i in rows], [[column[i] for i in rows] for column in table.numbers],
                         [[column[i] for i in rows] for column in table.sketches[:wanted]])
    return [part(count) for count in (len(METRIC_SKETCHES), len(METRIC_SKETCHES) + 1, len(SKETCHES))]


def blobs_of(grain):
    """How many of SKETCHES the cells of `grain` hold: the metrics' sketches,
    and the tails' numbers (TAILED), and the quarter hours (MODEL_DAY)."""
    if grain == MODEL_DAY:
        return len(SKETCHES)
    return len(METRIC_SKETCHES) + (grain in TAILED)


def add_cells(table, sketches_from_pieces):
    """[(sql, params)] that add the cells of a CellTable (written in its
    order) to the stored ones, inserting those that are missing; each
    returns rows (id, sketch_pieces, *sketches) of the cells it wrote, their
    sketches only if they now hold `sketches_from_pieces` pieces or more
    (else None).

    INSERT ... ON CONFLICT DO UPDATE, once for each set of blobs
    (`_parts`): counts, cost and sums add, minima
    and maxima are kept, and each sketch gets the row's appended (a sketch's
    pairs add up; app/sketch.py), as do a model_day cell's quarter hours
    (app/quarters.py) and a day cell's tails (app/day_tails.py), so no cell
    is read first. PostgreSQL's
    upsert locks each cell it inserts or updates until COMMIT, taking them in
    the rows' order: concurrent batches wait for each other's cells instead
    of losing an addition or deadlocking.
    """
    statements = []
    for part in _parts(table):  # each in key order; every batch writes the parts in the same order
        statements += insert_statements(part, _upsert(SKETCHES[:len(part.sketches)], sketches_from_pieces))
    return statements


def _upsert(blobs, sketches_from_pieces):
    """The ON CONFLICT ... RETURNING of `add_cells`, appending the `blobs` columns."""
    least, greatest = ("LEAST", "GREATEST") if isinstance(database.obj, PostgresqlDatabase) else ("MIN", "MAX")
    added = ["calls", "cost_micro_usd"]
    assignments = []
    for metric in METRICS:
        added.append(f"{metric}_sum")
        assignments += [f"{metric}_min = {least}(usage_rollup.{metric}_min, excluded.{metric}_min)",
                        f"{metric}_max = {greatest}(usage_rollup.{metric}_max, excluded.{metric}_max)"]
    assignments += [f"{name} = {_concatenated(f'usage_rollup.{name}', f'excluded.{name}')}" for name in blobs]
    assignments += [f"{name} = usage_rollup.{name} + excluded.{name}" for name in added]
    assignments.append("sketch_pieces = usage_rollup.sketch_pieces + 1")
    wanted = [f"CASE WHEN usage_rollup.sketch_pieces >= {int(sketches_from_pieces)} THEN usage_rollup.{name} END"
              for name in blobs]
    return (f" ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO UPDATE SET {', '.join(assignments)}"
            f" RETURNING id, sketch_pieces, {', '.join(wanted)}")


def _concatenated(left, right):
    if isinstance(database.obj, PostgresqlDatabase):
        return f"{left} || {right}"
    return f"CAST({left} || {right} AS BLOB)"  # SQLite's || gives text; its bytes are the blobs'


def write_sketches(rows):
    """Write (sketches..., id) rows over the cells they name, as one piece each."""
    if not rows:
        return
    if isinstance(database.obj, PostgresqlDatabase):
        source, params = unnest(SKETCHES + ["id"], zip(*rows))
        assignments = ", ".join(f"{name} = v.{name}" for name in SKETCHES)
        database.execute_sql(f"UPDATE usage_rollup AS r SET {assignments}, sketch_pieces = 1 FROM {source}"
                             f" AS v({', '.join(SKETCHES + ['id'])}) WHERE r.id = v.id", params)
    else:
        assignments = ", ".join(f"{name} = ?" for name in SKETCHES)
        execute_many(f"UPDATE usage_rollup SET {assignments}, sketch_pieces = 1 WHERE id = ?", rows)


def insert_cells(table):
    """Insert the cells of a CellTable (`rebuild_month` deleted the month's first)."""
    for sql, params in insert_statements(table):
        database.execute_sql(sql, params)


def lock_cells():
    """Keep writers of usage_rollup waiting until COMMIT; readers go on.

    PostgreSQL: SHARE ROW EXCLUSIVE conflicts with the ROW EXCLUSIVE lock
    every INSERT and UPDATE takes. SQLite: take the write lock now, with an
    empty write, so that the month's calls are read under it."""
    if isinstance(database.obj, PostgresqlDatabase):
        database.execute_sql("LOCK TABLE usage_rollup IN SHARE ROW EXCLUSIVE MODE")
    else:
        database.execute_sql("DELETE FROM usage_rollup WHERE 0 = 1")
