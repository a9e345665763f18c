"""Mergeable percentile sketches with a relative error of at most 1%.

A sketch counts a metric's values per bin. The bins are fixed integer ranges
[lo, hi], built once from integer arithmetic alone (no floating point, so
every engine and every process bins a value identically): bin k starts at
lo, its representative value is r = floor(lo * 1.01) and it ends at
hi = floor(r / 0.99). Every integer v in [lo, hi] then has |r - v| <= 1% of
v, whichever side of r it lies. Below 99 each bin holds one integer, so small
values (token counts of short calls, zeros) stay exact; above, bins widen
geometrically like DDSketch's (about 2% apart), so 977 bins cover the
metrics' range (32-bit integers).

Merging sketches is adding counts per bin, so cells of any size and place
can be combined. The value at rank k of the merged values is the
representative of the bin holding that rank: the true value at rank k lies
in the same bin (bins are ordered like values), so the estimate is within 1%
of it. `app/statistics.py` says how ranks become percentiles.

Encoding (what the rollup table stores): little-endian pairs (bin: uint16,
count: uint16), 4 bytes each. A sketch made here lists its non-empty bins
in increasing order, a count above MAX_COUNT as several pairs of its bin; a
stored one may also be several such sketches end to end (ingestion appends
a batch's sketch to a cell's instead of rewriting it), as pairs of one bin
add up wherever they are: concatenating is merging. Counts were uint64
(10-byte pairs) before migration 008: a cell's sketches were then most of its
row, and PostgreSQL writes a whole new row, to the table and to its WAL, for
every batch that adds to a cell (a 1000-call backfill batch: 2.5 MB of WAL).
"""
import numpy as np

PAIR = np.dtype([("bin", "<u2"), ("count", "<u2")])
MAX_COUNT = np.iinfo(PAIR["count"]).max
# Merging counts into a dense array, a counter per possible (group, bin),
# beats sorting the entries while there are at most this many counters per
# entry (measured: at 0.5 a counter an entry, 0.9 against 6.4 ms; at 37, as
# when a batch merges the pieces of 190 cells, 1.9 against 0.2 ms), and up to
# DENSE_LIMIT counters (16 MB).
DENSE_PER_ENTRY = 4
DENSE_LIMIT = 2_000_000


def _bins():
    lows, representatives = [], []
    low = 0
    while low < 2 ** 32:  # metrics are 32-bit integers (app/records.py MAX_INT)
        representative = low * 101 // 100
        lows.append(low)
        representatives.append(representative)
        low = representative * 100 // 99 + 1
    return np.array(lows, dtype=np.int64), np.array(representatives, dtype=np.int64)


LOWS, REPRESENTATIVES = _bins()


def bin_of(values):
    """The bin of each non-negative integer in `values` (an array)."""
    return np.searchsorted(LOWS, values, side="right") - 1


def decode(sketch):
    return np.frombuffer(sketch, dtype=PAIR)


class SketchSet:
    """Sketches of many groups at once, as flat arrays: group number, bin, count.

    Built from stored sketches and from raw values alike, so one group may
    receive several pieces; `at_ranks` merges them (adding counts per
    bin) before reading ranks, all in a few vectorised passes.
    """

    def __init__(self):
        self._groups, self._bins, self._counts = [], [], []
        self._coarser = {}  # group -> a group its values count in too

    def count_also_in(self, coarser):
        """Count the values of each group g in group coarser[g] too ({group:
        group}): added from g's merged sketch, a few hundred pairs, instead of
        from every piece of g again."""
        self._coarser.update(coarser)

    def add_sketches(self, groupings, sketches):
        """Stored sketches (bytes), the i-th belonging to group number
        grouping[i] of each grouping in `groupings` (decoded once for all)."""
        if not sketches:
            return
        pairs = decode(b"".join(sketches))
        lengths = np.fromiter(map(len, sketches), dtype=np.int64, count=len(sketches)) // PAIR.itemsize
        bins, counts = pairs["bin"].astype(np.int64), pairs["count"].astype(np.int64)
        for groups in groupings:
            self._groups.append(np.repeat(np.asarray(groups, dtype=np.int64), lengths))
            self._bins.append(bins)
            self._counts.append(counts)

    def add_values(self, groupings, values):
        """Raw values, the i-th belonging to group number grouping[i] of each
        grouping in `groupings`."""
        if len(values):
            bins, counts = bin_of(np.asarray(values, dtype=np.int64)), np.ones(len(values), dtype=np.int64)
            for groups in groupings:
                self._groups.append(np.asarray(groups, dtype=np.int64))
                self._bins.append(bins)
                self._counts.append(counts)

    def add_pairs(self, groups, bins, counts):
        """(bin, count) pairs of sketches, the i-th belonging to group number
        groups[i]. A count may be negative, taking values out of a group that
        holds them (the counts of each (group, bin) add up to zero or more)."""
        if len(groups):
            self._groups.append(np.asarray(groups, dtype=np.int64))
            self._bins.append(np.asarray(bins, dtype=np.int64))
            self._counts.append(np.asarray(counts, dtype=np.int64))

    def _merged(self):
        """(groups, bins, counts): each group's entries together and sorted by
        bin, one entry per (group, bin); the groups sorted too where some
        count in coarser ones, else in no order (`added_up_where_needed`)."""
        pieces = [np.concatenate(parts) for parts in (self._groups, self._bins, self._counts)]
        if not self._coarser:
            return added_up_where_needed(*pieces)
        merged = added_up(*pieces)
        groups, bins, counts = merged
        target = np.full(max(groups.max(initial=0), max(self._coarser)) + 1, -1, dtype=np.int64)
        target[list(self._coarser)] = list(self._coarser.values())
        coarse = target[groups]
        counted = coarse >= 0
        return added_up(np.concatenate([groups, coarse[counted]]), np.concatenate([bins, bins[counted]]),
                         np.concatenate([counts, counts[counted]]))

    def encoded(self):
        """{group: its merged sketch as bytes}."""
        if not self._groups:
            return {}
        groups, bins, counts = self._merged()
        if not len(groups):  # only empty sketches (failed_day cells keep none)
            return {}
        if counts.max(initial=0) > MAX_COUNT:  # rare: such counts become several pairs
            groups, bins, counts = split_counts(groups, bins, counts)
        pairs = np.empty(len(bins), dtype=PAIR)
        pairs["bin"], pairs["count"] = bins, counts
        starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
        ends = np.r_[starts[1:], len(groups)]
        return {group: pairs[start:end].tobytes()
                for group, start, end in zip(groups[starts].tolist(), starts.tolist(), ends.tolist())}

    def at_ranks(self, ranks_of):
        """(the groups with values, their sizes, the ranks [group x rank
        wanted], the estimated values at them [same shape]), as arrays.

        `ranks_of(sizes)`: for an array of group sizes, the zero-based ranks
        wanted of each group, as a list of arrays (one per rank wanted, one
        entry per group); ranks >= n read the last value.
        """
        merged = self._merged() if self._groups else None
        if merged is None or not len(merged[0]):  # no sketch, or only empty ones
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty.reshape(0, 0), empty.reshape(0, 0)
        groups, bins, counts = merged
        cumulative = np.cumsum(counts)
        starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
        ends = np.r_[starts[1:], len(groups)]
        before = np.r_[0, cumulative[:-1]][starts]  # values of the groups sorted before
        sizes = cumulative[ends - 1] - before
        ranks = np.minimum(np.column_stack(ranks_of(sizes)).astype(np.int64), (sizes - 1)[:, None])
        # The value of rank r is in the first bin whose running count exceeds r.
        at = np.searchsorted(cumulative, ranks + before[:, None], side="right")
        return groups[starts], sizes, ranks, REPRESENTATIVES[bins[at]]


def added_up_where_needed(groups, bins, counts):
    """As `added_up`, but a group whose entries are already one run of rising
    bins with positive counts (a stored sketch of one piece) stays as it is
    and where it is: only the other groups' entries are sorted and added up,
    after the rest. Each group's entries are then together and in bin order;
    the groups are in no order. A series by tenant by local day is such
    sketches, 13,500 of about 190 pairs each at 10M calls: sorting and adding
    up their 2.6M entries took 44 ms, this 10 ms, and one group in two pieces
    (a day ingestion appended to) no longer makes all of them take it."""
    if not len(groups) or _fits_dense(groups):  # added_up is then one pass anyway
        return added_up(groups, bins, counts)
    boundary = np.r_[True, groups[1:] != groups[:-1]]
    starts = np.flatnonzero(boundary)
    run_groups, run_of = groups[starts], np.cumsum(boundary) - 1
    unsorted = np.zeros(len(starts), dtype=bool)
    unsorted[run_of[1:][~boundary[1:] & (bins[1:] <= bins[:-1])]] = True
    unsorted[run_of[counts <= 0]] = True
    ordered = np.sort(run_groups)
    needing = np.union1d(run_groups[unsorted], ordered[1:][ordered[1:] == ordered[:-1]])  # or in several runs
    if not len(needing):
        return groups, bins, counts
    if len(needing) == len(np.unique(ordered)):
        return added_up(groups, bins, counts)
    dirty = np.repeat(np.isin(run_groups, needing), np.diff(np.r_[starts, len(groups)]))
    merged = added_up(groups[dirty], bins[dirty], counts[dirty])
    return tuple(np.concatenate([column[~dirty], again]) for column, again in zip((groups, bins, counts), merged))


def added_up(groups, bins, counts):
    """(groups, bins, counts) sorted by group and bin, the counts of each
    (group, bin) added into one entry, none of them zero."""
    codes = groups * len(LOWS) + bins
    if not len(codes):
        return groups, bins, counts
    # bincount adds in float64: exact, as no count comes near 2**53 calls.
    if _fits_dense(groups):  # a counter per (group, bin), no sort
        dense = np.bincount(codes, weights=counts)
        codes = np.flatnonzero(dense)
        counts = dense[codes].astype(np.int64)
    else:
        # A stable sort (timsort) merges the sorted runs that sketches read
        # from cells are, and adds no inverse index: the 1.3M pairs of a
        # 90-day series by tenant at 1M calls took 24 ms, against 103 with
        # np.unique(return_inverse=True) (and 160 against 170 shuffled).
        order = np.argsort(codes, kind="stable")
        codes, counts = codes[order], counts[order]
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
        codes, counts = codes[starts], np.add.reduceat(counts, starts)
        if (counts == 0).any():  # all taken out again (`add_pairs`)
            codes, counts = codes[counts != 0], counts[counts != 0]
    return codes // len(LOWS), codes % len(LOWS), counts


def _fits_dense(groups):
    """Whether a counter per possible (group, bin) of these entries' groups
    fits the limits of DENSE_PER_ENTRY and DENSE_LIMIT."""
    return (int(groups.max()) + 1) * len(LOWS) <= min(DENSE_PER_ENTRY * len(groups), DENSE_LIMIT)


def split_counts(groups, bins, counts):
    """The same entries with every count above MAX_COUNT as several of at
    most MAX_COUNT each (one bin's pairs add up), in the same order."""
    pieces = (counts + MAX_COUNT - 1) // MAX_COUNT
    split = np.full(pieces.sum(), MAX_COUNT, dtype=np.int64)
    split[np.cumsum(pieces) - 1] = counts - MAX_COUNT * (pieces - 1)  # the last piece of each
    return np.repeat(groups, pieces), np.repeat(bins, pieces), split
