"""Keeping cells with the calls: `cells_of` them, and `add` them in the
transaction that stores them."""
from ...rollups import CellBuilder, merged
from .cells import add_cells, write_sketches

# A cell whose sketches hold this many appended pieces has them merged into
# one by the batch that appended the last: what statistics read stays within
# a few batches' pairs of the merged size, and merging costs a batch little.
COMPACT_AFTER = 8


def cells_of(rows):
    """The CellTable of call rows (dicts of LlmCall fields)."""
    builder = CellBuilder()
    for row in rows:
        builder.add(row)
    return builder.table()


def add(table):
    """Add the cells of calls just inserted (`cells_of` them) to the stored
    ones, inside the caller's transaction, so the cells change if and only
    if the calls are stored.

    One statement adds the batch's cells to the stored ones (`add_cells`),
    appending the batch's sketches to theirs; then the cells that reached
    COMPACT_AFTER pieces have their sketches merged.
    """
    written = add_cells(table, COMPACT_AFTER)
    _compact({cell_id: sketches for cell_id, pieces, *sketches in written if pieces >= COMPACT_AFTER})


def _compact(stored):
    """Merge the sketches {cell id: [its sketch per metric]} of cells this
    transaction has just written (and so holds locked), each into one piece.
    The upsert returned them: reading them again took a statement more."""
    if not stored:
        return
    sketches = merged({cell_id: [bytes(sketch) for sketch in row] for cell_id, row in stored.items()})
    write_sketches([[*sketches[cell_id], cell_id] for cell_id in sorted(stored)])
