"""Keeping cells with the calls: `add`, in the transaction that stores them."""
from peewee import chunked

from ...db import fetch_all
from ...models import UsageRollup
from ...rollups import CellBuilder, merged
from .cells import SKETCHES, add_cells, write_sketches

# A cell whose sketches hold this many appended pieces has them merged into
# one by the batch that appended the last: what statistics read stays within
# a few batches' pairs of the merged size, and merging costs a batch little.
COMPACT_AFTER = 8


def add(created_rows):
    """Add calls just inserted (dicts of LlmCall fields) to their cells, inside
    the caller's transaction, so the cells change if and only if the calls are
    stored.

    One statement adds the batch's cells to the stored ones (`add_cells`),
    appending the batch's sketches to theirs; then the cells that reached
    COMPACT_AFTER pieces have their sketches merged.
    """
    builder = CellBuilder()
    for row in created_rows:
        builder.add(row)
    written = add_cells(builder.table())
    _compact([cell_id for cell_id, pieces in written if pieces >= COMPACT_AFTER])


def _compact(cell_ids):
    """Merge the sketches of the cells `cell_ids`, which this transaction has
    just written (and so holds locked), each into one piece."""
    for ids in chunked(sorted(cell_ids), 1000):
        query = (UsageRollup
                 .select(UsageRollup.id, *(getattr(UsageRollup, name) for name in SKETCHES))
                 .where(UsageRollup.id.in_(ids)))
        stored = {row[0]: [bytes(sketch) for sketch in row[1:]] for row in fetch_all(query)}
        sketches = merged(stored)
        write_sketches([[*sketches[cell_id], cell_id] for cell_id in sorted(stored)])
