"""A UTC day's quarter hours, kept inside one cell: `model_day` cells (app/rollups.py).

A model_day cell holds a UTC day of every tenant for one (model, status):
its numbers and sketches are the day's, like any cell's, and two more
columns hold the same calls per quarter hour of the day (0 to 95):

- `quarters`: records of QUARTER_NUMBERS, a quarter and the cell's eleven
  numbers for it (calls, cost, then per metric its sum, minimum, maximum;
  61 bytes, where int64 throughout took 96);
- `quarter_sketches`: QUARTER_PAIRS, (quarter, metric, bin, count): each
  quarter's sketches (app/sketch.py), its pairs tagged with the quarter and
  the metric;
- `tail_sketches`: QUARTER_PAIRS too, but a pair's quarter q says it counts
  in the sketch of the day's calls from quarter q to the day's end (its
  *tail*), for each q where a zone ROLLUP_ZONES names has a local midnight
  inside the day (`tail_starts`; migration 019).

Every local midnight and hour of every zone since 1979 is a UTC quarter
hour, so a day, week or hour in any zone is whole days and whole quarters.
A local day of a named zone is even two tails and a day sketch: the part
of UTC day D from quarter q on is D's tail q, the part before it D's
sketch minus that tail (bin counts subtract exactly). Summing the
quarters' pairs instead read every tail quarter's pairs, which grow with
the calls: 30 local days by model in Asia/Kathmandu read 22 MB at 10M
calls (130 ms), where the tails are some 0.3 MB.

A tail is used only where it holds every call of its quarters (`whole_tails`):
one built by a batch from a worker whose ROLLUP_ZONES lacked the zone, or
before migration 019, lacks calls, and the quarters serve instead. No
readiness to track: its counts say it.
Kept in one row per (day, model, status), a backfill batch spread over a
day writes six rows where a cell per quarter hour would be some 360 rows
(measured: the ingestion of such batches fell from 0.52x to 0.45x the raw
insert's rate on SQLite with those; docs/rollups-in-every-zone.md).

As with sketches, a stored value may be several pieces end to end
(ingestion appends a batch's), merged when the cell's sketches are
(`merged`): records of one quarter add up (their minima and maxima are
kept), pairs of one (quarter, metric, bin) add up.
"""
import datetime as dt

import numpy as np

from . import local_days, sketch

QUARTERS_A_DAY = 96
QUARTER = dt.timedelta(minutes=15)
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


def tail_starts(day, zones):
    """The quarters of the UTC `day` (a midnight) at which a local day of one
    of `zones` (tzinfo objects) begins, as the series' day buckets begin
    (app/local_days.py), but 0: a day's tail from 0 is the day."""
    found = set()
    for tz in zones:
        for midnight in local_days.day_starts(day, day + local_days.DAY, tz):
            offset = midnight - day
            if offset and not offset % QUARTER:
                found.add(offset // QUARTER)
    return sorted(found)


def tails(quarter, metric, bins, counts, starts):
    """The entries (tail start, metric, bin, count) of the entries (quarter,
    metric, bin, count) given as arrays of one length, in each tail of
    `starts` holding them (an entry per entry and tail)."""
    held = [quarter >= start for start in starts]
    none = np.zeros(0, dtype=np.int64)
    return (np.concatenate([np.full(h.sum(), start, dtype=np.int64) for start, h in zip(starts, held)] + [none]),
            *(np.concatenate([column[h] for h in held] + [column[:0]]) for column in (metric, bins, counts)))


def whole_tails(tail_pairs, quarter_of_records, calls_of_records, starts):
    """Those of tail `starts` whose sketch in `tail_pairs` (a `tail_sketches`
    value, decoded) holds every call of the quarters from it on: the counts
    of its first metric add up to the calls the `quarters` records
    (`records`) say those quarters hold, none for a tail of no call. Counts
    only add, and a tail receives only calls of its quarters, so equal
    counts mean every call."""
    first = tail_pairs[tail_pairs["metric"] == 0]
    counted = np.bincount(first["quarter"], weights=first["count"], minlength=QUARTERS_A_DAY)
    return {start for start in starts if counted[start] == calls_of_records[quarter_of_records >= start].sum()}


def whole_tails_agree(merged_blobs, recomputed_blobs):
    """Whether the tails a cell's merged [quarters, quarter_sketches,
    tail_sketches] hold whole (`whole_tails`) are those its quarters
    recomputed from the calls (`recomputed_blobs`, the same three) add up to.
    Tails not whole are never read; the zones named when a tail was built
    need not be those named now."""
    stored = pairs(merged_blobs[2])
    quarter_of_records, numbers = records(merged_blobs[0])
    whole = sorted(whole_tails(stored, quarter_of_records, numbers[:, 0], set(stored["quarter"].tolist())))
    recomputed = pairs(recomputed_blobs[1])
    expected = tails(recomputed["quarter"], recomputed["metric"], recomputed["bin"],
                     recomputed["count"].astype(np.int64), whole)
    kept = stored[np.isin(stored["quarter"], whole)]
    return encoded_pairs(*expected) == encoded_pairs(
        kept["quarter"], kept["metric"], kept["bin"], kept["count"].astype(np.int64))


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
    """[quarters, quarter_sketches, tail_sketches] of the values in `pieces`
    [[quarters, quarter_sketches, tail_sketches], ...] (each possibly several
    pieces end to end), merged."""
    numbers_blob, *pair_blobs = (b"".join(bytes(piece[i]) for piece in pieces) for i in range(3))
    quarters, numbers = records(numbers_blob)
    quarters, numbers = numbers_per_group(quarters, numbers)
    return [encoded_numbers(quarters, numbers)] + [
        encoded_pairs(found["quarter"], found["metric"], found["bin"], found["count"].astype(np.int64))
        for found in map(pairs, pair_blobs)]
