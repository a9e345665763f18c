"""Day cells' tails: the numbers of a UTC day's calls from a named zone's local midnight on.

`/v1/usage/all` over the last 30 days in Asia/Kolkata starts at a local
midnight, 18:30 UTC: its totals (keyed by tenant, operation and model, which
the zones' day cells do not keep) were UTC day cells and the raw calls of
that first part-day, 18:30 to 24:00 UTC. Those grow with the history (25,600
calls at 10M, 20 ms of the answer's 96 in process). So the cells its totals
read, `day` cells of ok calls and `failed_day` cells, keep in a blob
`tail_numbers` the same numbers for the part of their day from each local
midnight of a zone ROLLUP_ZONES names that falls inside it (its *tail*). The
first part-day is then one day's cells.

Stored as records of quarters.QUARTER_NUMBERS (a quarter, then calls, cost,
and per metric sum, minimum, maximum; 61 bytes), one per *segment*: the calls
from one tail start to the next (or to the day's end), so that a call is in
one record, and the tail from quarter q is the records from q on added up
(`tails_at`). A record per tail instead put a call in two or three (Kolkata's
tail from 18:30 lies inside Kathmandu's from 18:15): 27 KB more a backfill
batch of 1000 calls, against about half that. A cell holds a record per
segment holding calls, at most one per named zone once merged.

Tails have no sketches (the percentiles of such answers are per tenant, from
the zones' day cells) and no heads: a window ending at a local midnight
before the latest call still reads that part-day raw (minima and maxima do
not subtract).

A tail from q holds every call of its part-day only where every batch since
the day's first call cut its segments at q: where the zone's cells are ready
from that day on (app/local_days.py), as the batches that keep them name the
zone. Migration 020 took every zone out of the ready ones, since the cells
stored before hold no tails; `rollups rebuild` computes them and makes the
zones ready again. Ingestion appends a batch's records, compaction adds
them up per segment (`merged`), as with sketches.
"""
import numpy as np

from . import quarters
from .rollups import FAILED_DAY

# The cells holding tails: `day` cells of ok calls, and `failed_day` cells.
TAILED = ("day", FAILED_DAY)


def tail_blobs(cell_of, day_of, quarter_of, numbers, starts_of_day):
    """{cell number: its tail_numbers value} of calls in UTC day cells
    `cell_of`, on days `day_of` (numbers), in quarters of their day
    `quarter_of`, with CellNumbers.numbers() `numbers` [n x 11] each;
    `starts_of_day` [the quarters each day's tails start at]
    (quarters.tail_starts), by day number: a record per segment holding calls."""
    days_of_starts = {}
    for day, starts in enumerate(starts_of_day):
        if starts:
            days_of_starts.setdefault(tuple(starts), []).append(day)
    groups, rows = [], []
    for starts, days in days_of_starts.items():  # a batch's days: one or two
        bounds = np.array(starts, dtype=np.int64)
        held = np.isin(day_of, days) & (quarter_of >= bounds[0])
        segment = bounds[np.searchsorted(bounds, quarter_of[held], side="right") - 1]
        groups.append(cell_of[held] * quarters.QUARTERS_A_DAY + segment)
        rows.append(numbers[held])
    if not sum(map(len, groups)):
        return {}
    return _encoded_per_cell(*quarters.numbers_per_group(np.concatenate(groups), np.concatenate(rows)))


def tails_at(blobs, firsts):
    """(owners, numbers [n x 11]): of each value in `blobs` whose tail from
    its quarter in `firsts` holds calls, its index and the tail's numbers
    (its records from that quarter on, added up)."""
    owners, found, numbers = _records(blobs)
    at = found >= np.asarray(firsts, dtype=np.int64)[owners]
    if not at.any():
        return owners[:0], numbers[:0]
    return quarters.numbers_per_group(owners[at], numbers[at])


def _records(blobs):
    """(the index of each record's value, its quarter, its numbers) of the records in `blobs`."""
    sizes = np.array([len(blob) // quarters.QUARTER_NUMBERS.itemsize for blob in blobs], dtype=np.int64)
    found, numbers = quarters.records(b"".join(blobs))
    return np.repeat(np.arange(len(blobs), dtype=np.int64), sizes), found, numbers


def merged(pieces):
    """{key: tail_numbers value} of {key: [values, each possibly several pieces end
    to end]}: the records of one segment added up (minima and maxima kept).
    All keys at once: compaction merges some 80 cells of a backfill batch."""
    keys = list(pieces)
    owners, found, numbers = _records([b"".join(bytes(piece) for piece in pieces[key]) for key in keys])
    blobs = _encoded_per_cell(*quarters.numbers_per_group(owners * quarters.QUARTERS_A_DAY + found, numbers))
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


def same_tails(blob, other, starts):
    """Whether two tail_numbers values give the same tails from `starts`."""
    def tails(value):
        owners, numbers = tails_at([value] * len(starts), starts)
        return {starts[owner]: row for owner, row in zip(owners.tolist(), numbers.tolist())}
    return tails(blob) == tails(other)
