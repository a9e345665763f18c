"""Cells written without reading them: usage_rollup.sketch_pieces, and lz4.

Ingestion no longer reads and rewrites a cell's sketches: it appends the
batch's piece to them in its INSERT ... ON CONFLICT DO UPDATE (a sketch is
a list of (bin, count) pairs whose counts add, so appending is merging; see
app/sketch.py). `sketch_pieces` counts them; once a cell has COMPACT_AFTER,
the batch that appended the last merges them into one
(app/repository/rollups/keep.py), which keeps what statistics read small. A
stored or rebuilt cell is one piece.

PostgreSQL compresses a row's sketches once it passes 2 kB, on every
update: with pglz that took 27 ms for the 160 cells of a live batch (busy
day and month cells), with lz4 4 ms. A server built without lz4 (or older
than PostgreSQL 14) keeps pglz.
"""
import peewee as pw

SKETCHES = ("call_duration_sketch", "input_tokens_sketch", "output_tokens_sketch")


def migrate(migrator, database, fake=False, **kwargs):
    migrator.sql("ALTER TABLE usage_rollup ADD COLUMN sketch_pieces INTEGER NOT NULL DEFAULT 1")
    if isinstance(database, pw.PostgresqlDatabase):
        columns = ", ".join(f"ALTER COLUMN {name} SET COMPRESSION lz4" for name in SKETCHES)
        migrator.sql(_unless_unsupported(f"ALTER TABLE usage_rollup {columns}"))


def _unless_unsupported(statement):
    """`statement` run by PL/pgSQL, which ignores its failing for want of lz4
    (EXECUTE parses it only then, so an older server's syntax error is caught too)."""
    return (f"DO $$ BEGIN EXECUTE '{statement}';"
            " EXCEPTION WHEN feature_not_supported OR syntax_error THEN NULL; END $$")


def rollback(migrator, database, fake=False, **kwargs):
    if isinstance(database, pw.PostgresqlDatabase):
        columns = ", ".join(f"ALTER COLUMN {name} SET COMPRESSION default" for name in SKETCHES)
        migrator.sql(_unless_unsupported(f"ALTER TABLE usage_rollup {columns}"))
    migrator.sql("ALTER TABLE usage_rollup DROP COLUMN sketch_pieces")
