"""A UTC day's quarter hours, kept inside one cell: `model_day` cells (app/rollups.py).

A model_day cell holds a UTC day of every tenant for one (model, status):
its numbers and sketches are the day's, like any cell's, and two more
columns hold the same calls per quarter hour of the day (0 to 95):

- `quarters`: records of QUARTER_NUMBERS, a quarter and the cell's eleven
  numbers for it (calls, cost, then per metric its sum, minimum, maximum;
  61 bytes, where int64 throughout took 96);
- `quarter_sketches`: QUARTER_PAIRS, (quarter, metric, bin, count): each
  quarter's sketches (app/sketch.py), its pairs tagged with the quarter and
  the metric.

Every local midnight and hour of every zone since 1979 is a UTC quarter
hour, so a day, week or hour in any zone is whole days and whole quarters.
Kept in one row per (day, model, status), a backfill batch spread over a
day writes six rows where a cell per quarter hour would be some 360 rows
(measured: the ingestion of such batches fell from 0.52x to 0.45x the raw
insert's rate on SQLite with those; docs/rollups-in-every-zone.md).

As with sketches, a stored value may be several pieces end to end
(ingestion appends a batch's), merged when the cell's sketches are
(`merged`): records of one quarter add up (their minima and maxima are
kept), pairs of one (quarter, metric, bin) add up.
"""
import numpy as np

from . import sketch

QUARTERS_A_DAY = 96
NUMBERS = 11  # CellNumbers.numbers(): calls, cost, then each metric's sum, minimum, maximum
# 61 bytes, packed: a metric's minimum and maximum are 32-bit (app/records.py MAX_INT).
QUARTER_NUMBERS = np.dtype([("quarter", "u1"), ("calls", "<u4"), ("cost", "<i8"), ("sum", "<i8", (3,)),
                            ("min", "<u4", (3,)), ("max", "<u4", (3,))])
QUARTER_PAIRS = np.dtype([("quarter", "u1"), ("metric", "u1"), ("bin", "<u2"), ("count", "<u2")])
# Which of the numbers are added, and which are minima and maxima.
MINIMA = [3, 6, 9]
MAXIMA = [4, 7, 10]


def records(blob):
    """(quarters, numbers [n x NUMBERS], int64) of a `quarters` value."""
    decoded = np.frombuffer(blob, dtype=QUARTER_NUMBERS)
    numbers = np.empty((len(decoded), NUMBERS), dtype=np.int64)
    numbers[:, 0], numbers[:, 1] = decoded["calls"], decoded["cost"]
    numbers[:, 2::3], numbers[:, 3::3], numbers[:, 4::3] = decoded["sum"], decoded["min"], decoded["max"]
    return decoded["quarter"].astype(np.int64), numbers


def pairs(blob):
    """The QUARTER_PAIRS of a `quarter_sketches` value."""
    return np.frombuffer(blob, dtype=QUARTER_PAIRS)


def numbers_per_group(groups, numbers, minima=MINIMA, maxima=MAXIMA):
    """(sorted distinct groups, their numbers): the rows of `numbers` [n x
    NUMBERS] added up per group, but for the columns `minima` and `maxima`,
    whose least and greatest are kept."""
    order = np.argsort(groups, kind="stable")
    groups, numbers = groups[order], numbers[order]
    firsts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    merged = np.add.reduceat(numbers, firsts) if len(groups) else numbers[:0]
    if len(groups):
        merged[:, minima] = np.minimum.reduceat(numbers[:, minima], firsts)
        merged[:, maxima] = np.maximum.reduceat(numbers[:, maxima], firsts)
    return groups[firsts], merged


def encoded_numbers(quarters, numbers):
    """The `quarters` value of records (one per quarter, in order)."""
    out = np.empty(len(quarters), dtype=QUARTER_NUMBERS)
    out["quarter"], out["calls"], out["cost"] = quarters, numbers[:, 0], numbers[:, 1]
    out["sum"], out["min"], out["max"] = numbers[:, 2::3], numbers[:, 3::3], numbers[:, 4::3]
    return out.tobytes()


def encoded_pairs(quarters, metrics, bins, counts):
    """The `quarter_sketches` value of (quarter, metric, bin, count) entries,
    their counts added up per (quarter, metric, bin) (`sketch.added_up`, the
    quarter and metric as its group), sorted; a count above
    sketch.MAX_COUNT as several pairs (`sketch.split_counts`)."""
    groups, bins, counts = sketch.split_counts(*sketch.added_up(
        np.asarray(quarters, dtype=np.int64) * 256 + metrics, np.asarray(bins, dtype=np.int64), counts))
    out = np.empty(len(groups), dtype=QUARTER_PAIRS)
    out["quarter"], out["metric"], out["bin"], out["count"] = groups // 256, groups % 256, bins, counts
    return out.tobytes()


def merged(pieces):
    """[quarters, quarter_sketches] of the values in `pieces` [[quarters,
    quarter_sketches], ...] (each possibly several pieces end to end), merged."""
    numbers_blob = b"".join(bytes(piece[0]) for piece in pieces)
    pairs_blob = b"".join(bytes(piece[1]) for piece in pieces)
    quarters, numbers = records(numbers_blob)
    quarters, numbers = numbers_per_group(quarters, numbers)
    found = pairs(pairs_blob)
    return [encoded_numbers(quarters, numbers),
            encoded_pairs(found["quarter"], found["metric"], found["bin"], found["count"].astype(np.int64))]
