"""Day cells' tails: the numbers of a UTC day's calls from a named zone's local midnight on.

`/v1/usage/all` over the last 30 days in Asia/Kolkata starts at a local
midnight, 18:30 UTC: its totals (keyed by tenant, operation and model, which
the zones' day cells do not keep) were UTC day cells and the raw calls of
that first part-day, 18:30 to 24:00 UTC. Those grow with the history (25,600
calls at 10M, 20 ms of the answer's 96 in process). So the cells its totals
read, `day` cells of ok calls and `failed_day` cells, keep in a blob
`tail_numbers` the same numbers for the part of their day from each local
midnight of a zone ROLLUP_ZONES names that falls inside it (its *tail*):
records of quarters.QUARTER_NUMBERS (the quarter the tail starts at, then
calls, cost, and per metric sum, minimum, maximum; 61 bytes). No record: the
tail holds no call. The first part-day is then one day's cells.

Tails have no sketches (the percentiles of such answers are per tenant, from
the zones' day cells) and no heads: a window ending at a local midnight
before the latest call still reads that part-day raw (minima and maxima do
not subtract).

A tail holds every call only where every batch since the day's first call
computed it: the zone's cells are ready from that day on (app/local_days.py),
as the same batches keep both. Migration 020 took every zone out of the ready
ones, since the cells stored before hold no tails; `rollups rebuild` computes
them and makes the zones ready again. Ingestion appends a batch's records,
compaction adds them up per quarter (`merged`), as with sketches.
"""
import numpy as np

from . import quarters
from .rollups import FAILED_DAY

# The cells holding tails: `day` cells of ok calls, and `failed_day` cells.
TAILED = ("day", FAILED_DAY)


def tail_blobs(cell_of, quarter_of, numbers, starts_of_cell):
    """{cell number: its tail_numbers value} of calls in cells `cell_of`, in
    quarters of their day `quarter_of`, with CellNumbers.numbers() `numbers`
    [n x 11] each; `starts_of_cell` {cell number: the quarters its day's tails
    start at} (quarters.tail_starts). A tail of no call has no record."""
    groups, rows = [], []
    for start in sorted({start for starts in starts_of_cell.values() for start in starts}):
        cells = np.array([cell for cell, starts in starts_of_cell.items() if start in starts], dtype=np.int64)
        held = np.isin(cell_of, cells) & (quarter_of >= start)
        groups.append(cell_of[held] * quarters.QUARTERS_A_DAY + start)
        rows.append(numbers[held])
    if not sum(map(len, groups)):
        return {}
    return _encoded_per_cell(*quarters.numbers_per_group(np.concatenate(groups), np.concatenate(rows)))


def merged(pieces):
    """{key: tail_numbers value} of {key: [values, each possibly several pieces end
    to end]}: the records of one quarter added up (minima and maxima kept).
    All keys at once: compaction merges some 80 cells of a backfill batch."""
    keys = list(pieces)
    joined = [b"".join(bytes(piece) for piece in pieces[key]) for key in keys]
    sizes = np.array([len(blob) // quarters.QUARTER_NUMBERS.itemsize for blob in joined], dtype=np.int64)
    found, numbers = quarters.records(b"".join(joined))
    owner = np.repeat(np.arange(len(keys), dtype=np.int64), sizes)
    blobs = _encoded_per_cell(*quarters.numbers_per_group(owner * quarters.QUARTERS_A_DAY + found, numbers))
    return {key: blobs.get(number, b"") for number, key in enumerate(keys)}


def _encoded_per_cell(groups, numbers):
    """{cell number: its records' value} of sorted groups (cell number x
    QUARTERS_A_DAY + quarter) and their numbers."""
    encoded = quarters.encoded_numbers(groups % quarters.QUARTERS_A_DAY, numbers)
    size = quarters.QUARTER_NUMBERS.itemsize
    cells = groups // quarters.QUARTERS_A_DAY
    firsts = np.flatnonzero(np.r_[True, cells[1:] != cells[:-1]])
    ends = np.r_[firsts[1:], len(cells)]
    return {cell: encoded[first * size:end * size]
            for cell, first, end in zip(cells[firsts].tolist(), firsts.tolist(), ends.tolist())}


def restricted(blob, starts):
    """A tail_numbers value with the records of the tails starting at `starts` alone."""
    found = np.frombuffer(blob, dtype=quarters.QUARTER_NUMBERS)
    return found[np.isin(found["quarter"], list(starts))].tobytes()
