"""Keeping cells with the calls: `cells_of` them, and add them in the
transaction that stores them (`cell_writes`, then `compacted`)."""
from ...cell_builder import CellBuilder, merged
from ...db import pipelined
from ...rollups import CELL_GRAINS
from .cells import add_cells, write_sketches

# A cell whose sketches hold this many appended pieces has them merged into
# one by the batch that appended the last: what statistics read stays within
# a few batches' pairs of the merged size, and merging costs a batch little.
COMPACT_AFTER = 8


def cells_of(rows, grains=CELL_GRAINS):
    """The CellTable of call rows (dicts of LlmCall fields), of `grains`."""
    builder = CellBuilder(grains)
    for row in rows:
        builder.add(row)
    return builder.table()


def cell_writes(table):
    """[(sql, params)] adding the cells of calls just inserted (`cells_of`
    them) to the stored ones, appending the batch's sketches to theirs
    (`add_cells`). Ingestion builds them while its INSERT runs, sends them
    in the transaction that stores the calls (so the cells change if and
    only if the calls are stored), with `pipelined(..., binary=True)`, and
    hands their rows to `compacted`."""
    return add_cells(table, COMPACT_AFTER)


def compacted(written):
    """[[*sketches, cell id]]: the merged sketches of the cells that the
    rows `written` (a list per statement of `cell_writes`) say reached
    COMPACT_AFTER pieces; `write_compacted` stores them. The upsert
    returned their sketches: reading them again took a statement more, and
    the cells are locked by this transaction until it ends."""
    stored = {cell_id: sketches for rows in written for cell_id, pieces, *sketches in rows
              if pieces >= COMPACT_AFTER}
    if not stored:
        return []
    sketches = merged({cell_id: [bytes(sketch) for sketch in row] for cell_id, row in stored.items()})
    return [[*sketches[cell_id], cell_id] for cell_id in sorted(stored)]


def write_compacted(rows):
    """Store `compacted` sketches, each cell's as one piece."""
    write_sketches(rows)


def add(table):
    """Add the cells of a CellTable to the stored ones and compact them: what
    ingestion does in steps, interleaved with its other work."""
    with pipelined(cell_writes(table), binary=True) as written:
        pass
    write_compacted(compacted(written))
