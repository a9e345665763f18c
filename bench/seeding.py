"""Seeding the benchmark's synthetic calls fast enough for 10 million.

The columns are drawn with NumPy, CHUNK rows at a time (memory stays bounded
whatever the scale), with the distributions of bench.synthetic_call: tenants,
operations and models uniform, ~10% errors (0 output tokens, an error class),
durations lognormal(7.0, 0.6) truncated to whole ms, tokens uniform, cost
round(in * price_in + out * price_out) micro-USD for ok calls (half to even,
as Python's round) else 0, timestamps uniform over `span_s` seconds ending
`now`, random version-4 call_ids. Not the draws random.Random(seed) gave
(another generator): the same distributions.

- PostgreSQL (`seed_postgres`): one `COPY llm_call (...) FROM STDIN (FORMAT
  BINARY)` through psycopg 3, each chunk's rows assembled as one block of
  bytes by NumPy (`binary_rows`, about 700,000 rows/s) and handed to
  Copy.write, psycopg adapting nothing. Rows through write_row() would be
  Python tuples of UUIDs and datetimes, and text lines parsed again by the
  server (uuid and timestamp input): more work on both sides of the wire.
- SQLite (`seed_sqlite`): one transaction of `executemany` with one prepared
  INSERT, the rows as tuples of str and int built column-wise, under
  synchronous=OFF, journal_mode=MEMORY and a 1 GB page cache during the seed
  only (`_bulk_pragmas`).

On both, the time goes to the indexes: a seed that starts from empty tables
drops llm_call's indexes (and on PostgreSQL its keys) and builds them again
after the rows, in the same transaction, as PostgreSQL's "Populating a
Database" advises. The indexes are then as compact as those `VACUUM FULL`
left after a ladder's earlier scale.
"""
import contextlib
import datetime as dt
import time
from dataclasses import dataclass, field

import numpy as np
from psycopg.copy import QueuedLibpqWriter

OPERATIONS = ("analyze", "summarize", "summarize_aggregate", "assign_codes")
MODELS = {"gpt-4o-mini": (0.15, 0.6), "gpt-4o": (2.5, 10.0), "claude-haiku": (0.8, 4.0)}  # micro-USD/token
ERRORS = ("RateLimitError", "APITimeoutError", "InternalServerError")
CHUNK = 200_000  # rows generated and written at a time
COLUMNS = ("call_id", "tenant_id", "operation", "timestamp", "call_duration_ms", "model", "input_tokens",
           "output_tokens", "cost_micro_usd", "status", "error_class", "created_at")
UTC = dt.timezone.utc
PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=UTC)  # binary timestamps count microseconds from it
UNIX_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


def tenant_ids(count):
    return [f"bench-t{i:03d}" for i in range(count)]


def micros(moment, epoch):
    """Whole microseconds from `epoch` to `moment` (aware)."""
    delta = moment - epoch
    return (delta.days * 86400 + delta.seconds) * 10**6 + delta.microseconds


def columns(rng, size, tenant_count, now, span_s):
    """`size` synthetic calls as columns: NumPy arrays, text columns as codes
    into tenant_ids, OPERATIONS, MODELS and ERRORS (`error`: -1 for ok calls),
    the timestamp as `ago_us`, microseconds before `now`."""
    model = rng.integers(0, len(MODELS), size)
    ok = rng.random(size) >= 0.10
    input_tokens = rng.integers(50, 8001, size)
    output_tokens = np.where(ok, rng.integers(10, 2001, size), 0)
    price_in, price_out = (np.array(prices)[model] for prices in zip(*MODELS.values()))
    cost = np.where(ok, np.rint(input_tokens * price_in + output_tokens * price_out), 0).astype(np.int64)
    call_id = rng.integers(0, 256, (size, 16), dtype=np.uint8)
    call_id[:, 6] = (call_id[:, 6] & 0x0F) | 0x40  # version 4
    call_id[:, 8] = (call_id[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    return {"call_id": call_id, "tenant": rng.integers(0, tenant_count, size),
            "operation": rng.integers(0, len(OPERATIONS), size),
            "ago_us": np.rint(rng.random(size) * span_s * 1e6).astype(np.int64),
            "call_duration_ms": np.exp(rng.normal(7.0, 0.6, size)).astype(np.int64),
            "model": model, "input_tokens": input_tokens, "output_tokens": output_tokens,
            "cost_micro_usd": cost, "error": np.where(ok, -1, rng.integers(0, len(ERRORS), size))}


# PostgreSQL's binary COPY: a signature, then per row the field count and each
# field as its length (-1: NULL) and bytes, big-endian; then -1 as a trailer.
SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
TRAILER = b"\xff\xff"


def _fixed(*fields):
    """One block of fixed-size fields (name, big-endian dtype, values),
    each after its 4-byte length: a (rows, width) uint8 array."""
    dtype = []
    for name, kind, _ in fields:
        dtype += [(f"{name}_len", ">i4"), (name, kind)]
    block = np.empty(len(fields[0][2]), dtype=dtype)
    for name, kind, values in fields:
        block[f"{name}_len"] = np.dtype(kind).itemsize
        block[name] = values
    return block.view(np.uint8).reshape(len(block), -1)


def _choice(codes, values):
    """A text field whose row values are `values[codes]`; None is NULL
    (index -1 picks the last value): [(rows, (len(rows), width) uint8 array)],
    one entry per encoded length."""
    encoded = [b"\xff\xff\xff\xff" if v is None else len(v.encode()).to_bytes(4, "big") + v.encode()
               for v in values]
    parts = []
    for width in sorted({len(e) for e in encoded}):
        same = [i for i, e in enumerate(encoded) if len(e) == width]
        table = np.frombuffer(b"".join(encoded[i] for i in same), np.uint8).reshape(len(same), width)
        position = np.full(len(values), -1)
        position[same] = np.arange(len(same))
        rows = np.flatnonzero(position[codes] >= 0)
        parts.append((rows, table[position[codes[rows]]]))
    return parts


def binary_rows(cols, tenants, now_us, created_us):
    """The chunk's rows in COPY's binary format, one block of bytes (a
    memoryview; no signature, no trailer)."""
    n = len(cols["tenant"])
    pieces = [
        [(slice(None), np.concatenate([np.full((n, 2), [0, len(COLUMNS)], np.uint8),
                                       _fixed(("id", "V16", cols["call_id"].view("V16").ravel()))], axis=1))],
        _choice(cols["tenant"], tenants),
        _choice(cols["operation"], OPERATIONS),
        [(slice(None), _fixed(("ts", ">i8", now_us - cols["ago_us"]),
                              ("duration", ">i4", cols["call_duration_ms"])))],
        _choice(cols["model"], tuple(MODELS)),
        [(slice(None), _fixed(("in", ">i4", cols["input_tokens"]), ("out", ">i4", cols["output_tokens"]),
                              ("cost", ">i8", cols["cost_micro_usd"])))],
        _choice(cols["error"], ["error"] * len(ERRORS) + ["ok"]),  # status (code -1, ok, picks the last)
        _choice(cols["error"], [*ERRORS, None]),  # error_class
        [(slice(None), _fixed(("created", ">i8", np.full(n, created_us))))],
    ]
    return _concatenated(pieces, n)


def _concatenated(pieces, n):
    """Each row's pieces one after the other, the rows one after the other.
    A piece is [(rows, block)]: block[k] is the bytes of row rows[k]."""
    lengths = np.zeros(n, np.int64)
    for piece in pieces:
        for rows, block in piece:
            lengths[rows] += block.shape[1]
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    out = np.empty(int(lengths.sum()), np.uint8)
    for piece in pieces:
        widths = np.zeros(n, np.int64)
        for rows, block in piece:
            out[offsets[rows][:, None] + np.arange(block.shape[1])] = block
            widths[rows] = block.shape[1]
        offsets += widths
    return out.data


ONLY_BENCH = ("SELECT NOT EXISTS (SELECT 1 FROM tenant t WHERE t.tenant_id NOT LIKE 'bench-%' "
              "AND EXISTS (SELECT 1 FROM llm_call c WHERE c.tenant_id = t.tenant_id))")
DELETE_BENCH = "DELETE FROM llm_call WHERE tenant_id LIKE 'bench-%'"


@dataclass
class Seeded:
    """What a seed did: `rows` written; `deleted` earlier bench calls deleted
    row by row (None: the tables were emptied at once, no dead rows left);
    seconds spent writing rows and building indexes and keys after them."""

    rows: int = 0
    deleted: int | None = None
    write_s: float = 0.0
    build_s: float = 0.0
    notes: list = field(default_factory=list)


def seed_postgres(conn, chunks, now):
    """Replace the bench calls by `chunks`, in one transaction (`conn` in autocommit).

    When llm_call holds bench calls alone (ONLY_BENCH), the transaction
    TRUNCATEs llm_call and usage_rollup (the rebuild recomputes every cell),
    drops llm_call's indexes and its primary and foreign keys, COPYs every
    chunk (FREEZE: the rows are written frozen and all-visible, as VACUUM
    would leave them), then builds the indexes and keys again from their
    definitions in the catalog, whatever the migrations made them. Otherwise
    it DELETEs the bench calls and COPYs into the table as it is, its indexes
    kept up row by row. Measured (2 cores shared with other work): at 1M
    calls 41,600 rows/s into the indexed table, 103,000-146,000 truncated
    (COPY 2.4-2.9 s, builds 4.4-6.8 s); at 10M 95,000 rows/s in the ladder
    (COPY 24.8 s, builds 80.2 s), 169,000 seeded alone. The bench's memory
    stays at about 370 MB however many calls (10M: flat from the fourth
    chunk on); QueuedLibpqWriter queues at most 128 MB of a chunk.
    """
    seeded = Seeded()
    with conn.transaction():
        only_bench = conn.execute(ONLY_BENCH).fetchone()[0]
        if only_bench:
            conn.execute("TRUNCATE llm_call, usage_rollup")
            seeded.notes.append("llm_call and usage_rollup emptied by TRUNCATE (bench calls alone)")
        else:
            started = time.perf_counter()
            seeded.deleted = conn.execute(DELETE_BENCH).rowcount
            seeded.notes.append(f"deleted {seeded.deleted:,} earlier bench calls in "
                                f"{time.perf_counter() - started:.1f} s (other tenants' calls kept)")
        with _pg_without_keys(conn, seeded, only_bench):
            started = time.perf_counter()
            seeded.rows = _copy(conn, chunks, now, freeze=only_bench)
            seeded.write_s = time.perf_counter() - started
    return seeded


@contextlib.contextmanager
def _pg_without_keys(conn, seeded, drop):
    """llm_call without its indexes and primary and foreign keys while the
    block runs (if `drop`), then with them again, as they were defined."""
    if not drop:
        yield
        return
    constraints = conn.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'llm_call'::regclass AND contype IN ('p', 'f')"
        " ORDER BY contype DESC").fetchall()  # p first: a key may rest on it
    indexes = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
        " AND tablename = 'llm_call' AND indexname NOT IN"
        " (SELECT conname FROM pg_constraint WHERE conrelid = 'llm_call'::regclass)").fetchall()
    for name, _ in constraints[::-1]:
        conn.execute(f'ALTER TABLE llm_call DROP CONSTRAINT "{name}"')
    for name, _ in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    yield
    started = time.perf_counter()
    conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
    for _, definition in indexes:
        conn.execute(definition)
    for name, definition in constraints:
        conn.execute(f'ALTER TABLE llm_call ADD CONSTRAINT "{name}" {definition}')
    seeded.build_s = time.perf_counter() - started


def _copy(conn, chunks, now, freeze):
    """One COPY of every chunk (binary); the queued writer sends a chunk while
    the next one is generated. Returns the rows written."""
    now_us, written = micros(now, PG_EPOCH), 0
    options = "FORMAT BINARY, FREEZE" if freeze else "FORMAT BINARY"
    with conn.cursor() as cursor:
        statement = f"COPY llm_call ({', '.join(COLUMNS)}) FROM STDIN ({options})"
        with cursor.copy(statement, writer=QueuedLibpqWriter(cursor)) as copy:
            copy.write(SIGNATURE)
            for cols, tenants in chunks:
                copy.write(binary_rows(cols, tenants, now_us, micros(dt.datetime.now(UTC), PG_EPOCH)))
                written += len(cols["tenant"])
            copy.write(TRAILER)
    return written


def text_timestamps(us_since_unix):
    """'YYYY-MM-DD HH:MM:SS.ffffff', as Peewee stores a datetime on SQLite
    (no fraction when it is zero, as str(datetime) writes it)."""
    text = np.datetime_as_string(us_since_unix.astype("datetime64[us]"), unit="us")
    text.view(np.uint32).reshape(len(text), -1)[:, 10] = ord(" ")
    values = text.tolist()
    for i in np.flatnonzero(us_since_unix % 10**6 == 0).tolist():
        values[i] = values[i][:19]
    return values


def sqlite_rows(cols, tenants, now_us, created):
    """The chunk's rows as tuples of SQLite values (call_id as 32 hex digits, as Peewee's UUIDField)."""
    n = len(cols["tenant"])
    hexed = cols["call_id"].tobytes().hex()
    error = cols["error"]
    names = {"tenant": tenants, "operation": OPERATIONS, "model": tuple(MODELS)}
    text = {key: np.array(values, dtype=object)[cols[key]].tolist() for key, values in names.items()}
    return zip([hexed[i:i + 32] for i in range(0, 32 * n, 32)], text["tenant"], text["operation"],
               text_timestamps(now_us - cols["ago_us"]), cols["call_duration_ms"].tolist(), text["model"],
               cols["input_tokens"].tolist(), cols["output_tokens"].tolist(), cols["cost_micro_usd"].tolist(),
               np.where(error < 0, "ok", "error").astype(object).tolist(),
               np.array([*ERRORS, None], dtype=object)[error].tolist(), [created] * n)


def seed_sqlite(conn, chunks, now):
    """Replace the bench calls by `chunks` in one transaction (`conn` in
    autocommit), with the pragmas of `_bulk_pragmas`.

    As on PostgreSQL: when llm_call holds bench calls alone, both tables are
    emptied (DELETE without WHERE: SQLite's truncate optimization) and the
    indexes of llm_call dropped, then created again from their SQL after the
    rows; otherwise the bench calls are deleted and the rows inserted into
    the indexed table. Measured at 200,000 calls (2 cores): 35,000 rows/s
    indexed and WAL, 45,800 with the 1 GB cache, 140,000 without indexes
    (100,000 with them built in WAL mode).
    """
    seeded = Seeded()
    insert = f"INSERT INTO llm_call ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    with _bulk_pragmas(conn, seeded):
        conn.execute("BEGIN")
        try:
            indexes = _sqlite_emptied(conn, seeded)
            started, now_us = time.perf_counter(), micros(now, UNIX_EPOCH)
            for cols, tenants in chunks:
                created = dt.datetime.now(UTC).replace(tzinfo=None).isoformat(" ")
                conn.executemany(insert, sqlite_rows(cols, tenants, now_us, created))
                seeded.rows += len(cols["tenant"])
            seeded.write_s, started = time.perf_counter() - started, time.perf_counter()
            for sql in indexes:
                conn.execute(sql)
            conn.execute("COMMIT")
            seeded.build_s = time.perf_counter() - started
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return seeded


def _sqlite_emptied(conn, seeded):
    """Empty llm_call and usage_rollup and drop llm_call's indexes if it holds
    bench calls alone (returns the indexes' SQL), else delete the bench calls."""
    if not conn.execute(ONLY_BENCH).fetchone()[0]:
        started = time.perf_counter()
        seeded.deleted = conn.execute(DELETE_BENCH).rowcount
        seeded.notes.append(f"deleted {seeded.deleted:,} earlier bench calls in "
                            f"{time.perf_counter() - started:.1f} s (other tenants' calls kept)")
        return []
    conn.execute("DELETE FROM llm_call")
    conn.execute("DELETE FROM usage_rollup")
    seeded.notes.append("llm_call and usage_rollup emptied (bench calls alone)")
    indexes = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'"
                           " AND tbl_name = 'llm_call' AND sql IS NOT NULL").fetchall()
    for name, _ in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    return [sql for _, sql in indexes]


@contextlib.contextmanager
def _bulk_pragmas(conn, seeded):
    """synchronous=OFF, journal_mode=MEMORY and a 1 GB page cache while the
    block runs, then the connection's own settings again (WAL included).
    Leaving WAL needs the only connection to the file: if another one is
    open, the seed runs in WAL (said in the notes)."""
    saved = {name: conn.execute(f"PRAGMA {name}").fetchone()[0]
             for name in ("synchronous", "journal_mode", "cache_size")}
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -1000000")
    journal = conn.execute("PRAGMA journal_mode = MEMORY").fetchone()[0]
    synchronous = ("off", "normal", "full", "extra")[saved["synchronous"]]
    seeded.notes.append(f"SQLite during the seed: synchronous=off, journal_mode={journal}, cache 1 GB; "
                        f"then synchronous={synchronous}, journal_mode={saved['journal_mode']} again")
    try:
        yield
    finally:
        for name, value in saved.items():
            conn.execute(f"PRAGMA {name} = {value}")


def generated(rng, calls, tenant_count, now, span_s, progress=None):
    """(columns, tenant names) of CHUNK calls at a time, `calls` in all;
    `progress(done)` after each chunk is written."""
    tenants = tenant_ids(tenant_count)
    for done in range(0, calls, CHUNK):
        yield columns(rng, min(CHUNK, calls - done), tenant_count, now, span_s), tenants
        if progress:
            progress(min(done + CHUNK, calls))
