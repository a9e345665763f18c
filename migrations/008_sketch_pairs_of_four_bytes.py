"""Sketches in 4-byte pairs (bin: uint16, count: uint16) instead of 10-byte ones (count: uint64).

A cell's sketches were most of its row, and PostgreSQL writes a whole new
row version, to the table and to its WAL, for every batch that adds to a
cell: a 1000-call backfill batch updated 1,400 cells and wrote 2.5 MB of
WAL for them. With 4-byte pairs the same cells' upsert took 20 ms instead
of 26 (1M calls, 2 cores). A count above 65,535 is written as several pairs
of its bin, which add up like any pairs of one bin (`app/sketch.py`).

Every stored sketch is re-encoded here, in the migration's transaction;
the numbers and the cells are unchanged, so no rebuild is needed. Stop every
worker before migrating: older code would append 10-byte pairs to 4-byte ones.
The codec is written out here rather than imported: a migration must keep
doing what it did when it was written, whatever later code becomes.
"""
import numpy as np
import peewee as pw

SKETCHES = ("call_duration_sketch", "input_tokens_sketch", "output_tokens_sketch")
WIDE = np.dtype([("bin", "<u2"), ("count", "<u8")])
NARROW = np.dtype([("bin", "<u2"), ("count", "<u2")])
CELLS_PER_STATEMENT = 2000
BINS = 977  # app/sketch.py's bins of 32-bit values: a larger bin means the bytes are not such pairs


def migrate(migrator, database, fake=False, **kwargs):
    migrator.run(_recode_every_sketch, database, WIDE, NARROW)


def rollback(migrator, database, fake=False, **kwargs):
    migrator.run(_recode_every_sketch, database, NARROW, WIDE)


def _recode_every_sketch(database, old, new):
    postgres = isinstance(database, pw.PostgresqlDatabase)
    param = database.param
    last = 0
    while True:
        rows = database.execute_sql(
            f"SELECT id, {', '.join(SKETCHES)} FROM usage_rollup WHERE id > {param}"
            f" ORDER BY id LIMIT {CELLS_PER_STATEMENT}", (last,)).fetchall()
        if not rows:
            return
        ids = [row[0] for row in rows]
        columns = [_recoded([_bytes(row[i]) for row in rows], old, new) for i in range(1, 4)]
        if postgres:
            database.execute_sql(
                "UPDATE usage_rollup AS r SET " + ", ".join(f"{name} = v.{name}" for name in SKETCHES) +
                " FROM unnest(%s::bigint[], %s::bytea[], %s::bytea[], %s::bytea[])"
                f" AS v(id, {', '.join(SKETCHES)}) WHERE r.id = v.id", [ids, *columns])
        else:
            database.cursor().executemany(
                "UPDATE usage_rollup SET " + ", ".join(f"{name} = ?" for name in SKETCHES) + " WHERE id = ?",
                list(zip(*columns, ids)))
        last = ids[-1]


def _bytes(value):
    """A stored sketch as bytes; SQLite keeps an empty one written as '' as text."""
    return value.encode() if isinstance(value, str) else bytes(value)


def _recoded(sketches, old, new):
    """Each sketch (bytes of `old` pairs) as bytes of `new` pairs, in the same
    order; a count too large for `new` becomes several pairs of its bin."""
    most = int(min(np.iinfo(new["count"]).max, np.iinfo(np.int64).max))
    if any(len(sketch) % old.itemsize for sketch in sketches):
        raise RuntimeError(f"usage_rollup holds a sketch that is not {old.itemsize}-byte pairs")
    pairs = np.frombuffer(b"".join(sketches), dtype=old)
    if len(pairs) and pairs["bin"].max() >= BINS:
        raise RuntimeError(f"usage_rollup holds a sketch with a bin past {BINS - 1}:"
                           f" not {old.itemsize}-byte pairs")
    counts = pairs["count"].astype(np.int64)
    pieces = np.maximum((counts + most - 1) // most, 1)
    recoded = np.empty(int(pieces.sum()), dtype=new)
    recoded["bin"] = np.repeat(pairs["bin"], pieces)
    split = np.full(len(recoded), most, dtype=np.int64)
    split[np.cumsum(pieces) - 1] = counts - most * (pieces - 1)  # the last piece of each pair
    recoded["count"] = split
    owner = np.repeat(np.repeat(np.arange(len(sketches)), [len(s) // old.itemsize for s in sketches]), pieces)
    ends = np.cumsum(np.bincount(owner, minlength=len(sketches))) * new.itemsize
    data = recoded.tobytes()
    return [data[start:end] for start, end in zip([0, *ends[:-1].tolist()], ends.tolist())]
