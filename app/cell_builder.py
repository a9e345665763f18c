"""Building cells from calls: their numbers (`CellNumbers`), a batch of
them as columns (`CellTable`), `CellBuilder`, and `merged` sketches.

What a cell is, its grains and keys, and how a window is covered by cells
is app/rollups.py.
"""
import datetime as dt
from dataclasses import dataclass
from operator import itemgetter

import numpy as np

from . import buckets, day_tails, local_days, quarters, sketch
from .rollups import CELL_GRAINS, FAILED_DAY, KEY, METRICS, MODEL_DAY, QUARTER_BLOBS, QUARTERS_AT, TAILS_AT, floor, kept


class CellNumbers:
    """A cell's numbers (the NUMBERS columns of usage_rollup) while they are built or
    merged. Not the statistics' Cell of app/statistics.py, which is what an answer needs."""

    __slots__ = ("calls", "cost", "sums", "mins", "maxs")

    def __init__(self):
        self.calls = self.cost = 0
        self.sums, self.mins, self.maxs = [0, 0, 0], [None, None, None], [None, None, None]

    def add(self, calls, cost, sums, mins, maxs):
        self.calls += calls
        self.cost += cost
        for i in range(len(METRICS)):
            self.sums[i] += sums[i]
            self.mins[i] = mins[i] if self.mins[i] is None else min(self.mins[i], mins[i])
            self.maxs[i] = maxs[i] if self.maxs[i] is None else max(self.maxs[i], maxs[i])

    def numbers(self):
        """calls, cost, then each metric's sum, minimum and maximum: the order of
        usage_rollup's NUMBERS columns and of CellTable.numbers."""
        numbers = [self.calls, self.cost]
        for i in range(len(METRICS)):
            numbers += [self.sums[i], self.mins[i], self.maxs[i]]
        return numbers

    @classmethod
    def of(cls, calls, cost, *metrics):
        """The cell of `numbers()`: `metrics` is each metric's sum, minimum and maximum in turn."""
        cell = cls()
        cell.calls, cell.cost = calls, cost
        cell.sums, cell.mins, cell.maxs = (list(metrics[i::3]) for i in range(3))
        return cell


@dataclass
class CellTable:
    """Cells as columns, in the order of their keys (the order their rows are
    locked in): `keys` [(grain, cell_start, *KEY values)], `numbers` a list
    per number of CellNumbers.numbers(), `sketches` a list per blob (a
    sketch per metric, then tails and quarter hours: rollups.TAIL_NUMBERS)."""

    keys: list
    numbers: list
    sketches: list

    @classmethod
    def of(cls, cells, sketches):
        """The table of {key: CellNumbers} and {key: [a sketch per metric]}."""
        keys = sorted(cells)
        return cls(keys, [list(column) for column in zip(*(cells[key].numbers() for key in keys))],
                   [list(column) for column in zip(*(sketches[key] for key in keys))])

    def joined(self, other):
        """The cells of both tables (which share no key), in key order."""
        if not (self.keys and other.keys):
            return self if self.keys else other
        keys = self.keys + other.keys
        order = sorted(range(len(keys)), key=keys.__getitem__)

        def ordered(columns, other_columns):
            return [[both[i] for i in order] for both in (a + b for a, b in zip(columns, other_columns))]
        return CellTable([keys[i] for i in order], ordered(self.numbers, other.numbers),
                         ordered(self.sketches, other.sketches))


class CellBuilder:
    """Cells of calls, with their sketches.

    `add(row)` takes an llm_call row (dict of LlmCall fields); `table()`
    gives the CellTable of the cells of each of `grains` holding the calls
    added, `cells()` and `sketches()` the same as {(grain, cell_start, *KEY
    values): CellNumbers} and {same key: [a sketch per metric]}. `add` only
    numbers the call's keys (one per key shape, KEPT) and day; the cells' numbers and sketches are
    computed for every call at once with NumPy, as columns: building each
    cell's numbers in Python, call by call, then its row from them, took
    about 16 ms of a 1000-call backfill batch (1,400 cells), now about 6.
    """

    def __init__(self, grains=CELL_GRAINS):
        self._grains = grains
        # Per key shape (the KEY columns a grain keeps): the kept values of a
        # call's key, and {those values: their number}.
        self._shapes = {shape: (itemgetter(*(KEY.index(name) for name in shape)), {})
                        for shape in dict.fromkeys(kept(grain) for grain in grains)}
        self._days = {}  # UTC date -> its number
        # per call: a key number per shape, day number, quarter and second of the day, whether it
        # failed, cost, METRICS
        self._calls = []
        self._table = None

    def add(self, row):
        key = (row["tenant"], row["operation"], row["model"], row["status"], row["error_class"] or "")
        timestamp = row["timestamp"]
        self._calls += (*[keys.setdefault(pick(key), len(keys)) for pick, keys in self._shapes.values()],
                        self._days.setdefault(timestamp.date(), len(self._days)),  # timestamps are UTC
                        timestamp.hour * 4 + timestamp.minute // 15,  # its quarter hour of the day
                        timestamp.hour * 3600 + timestamp.minute * 60 + timestamp.second,
                        row["status"] == "error",  # FAILED_DAY cells hold these calls alone
                        row["cost_micro_usd"], row["call_duration_ms"], row["input_tokens"], row["output_tokens"])
        self._table = None

    def table(self):
        if self._table is None:
            self._table = self._computed() if self._calls and self._grains else CellTable([], [], [])
        return self._table

    def cells(self):
        table = self.table()
        return {key: CellNumbers.of(*numbers) for key, numbers in zip(table.keys, zip(*table.numbers))}

    def sketches(self):
        table = self.table()
        return {key: list(sketches) for key, sketches in zip(table.keys, zip(*table.sketches))}

    def _computed(self):
        shapes = list(self._shapes)
        calls = np.array(self._calls, dtype=np.int64).reshape(-1, len(shapes) + 8)
        day_column = len(shapes)
        values_column = day_column + 4  # cost, then METRICS
        days = [dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)
                for day in self._days]  # by number, as dicts keep their order
        # Cells are numbered in key order (grain, start, KEY values): a grain
        # at a time, by start, then by the rank of their key (sorting the
        # cells' keys afterwards took 5 of a backfill batch's 110 ms on SQLite).
        grains = sorted(self._grains)
        # Per grain: the cell number of each call it holds, those calls.
        cell_keys, cell_of, held_calls = [], [], []
        for grain in grains:
            held = calls[calls[:, day_column + 3] == 1] if grain == FAILED_DAY else calls  # failed calls alone
            shape = kept(grain)
            column = shapes.index(shape)
            keys = [_full_key(shape, values) for values in self._shapes[shape][1]]
            by_key = sorted(range(len(keys)), key=keys.__getitem__)
            rank = np.empty(len(keys), dtype=np.int64)
            rank[by_key] = np.arange(len(keys))
            starts, start_of_call = self._starts(grain, days, held[:, day_column], held[:, day_column + 2])
            codes, numbers = np.unique(start_of_call * len(keys) + rank[held[:, column]], return_inverse=True)
            cell_of.append(numbers.ravel() + len(cell_keys))
            held_calls.append(held)
            cell_keys += [(grain, starts[code // len(keys)], *keys[by_key[code % len(keys)]])
                          for code in codes.tolist()]
        # The quarters each day's tails start at (app/quarters.py), by day number.
        zones = [buckets.zone(name) for name in local_days.named()]
        tail_starts = [quarters.tail_starts(day, zones) for day in days]
        quartered = {} if MODEL_DAY not in grains else _quarter_blobs(
            cell_of[grains.index(MODEL_DAY)], calls[:, day_column + 1], calls[:, values_column:],
            _tail_starts(cell_keys, cell_of[grains.index(MODEL_DAY)], dict(zip(days, tail_starts))))
        tailed = {}
        for grain in day_tails.TAILED if any(tail_starts) else ():
            if grain in grains:
                cells, held = cell_of[grains.index(grain)], held_calls[grains.index(grain)]
                ok = held[:, day_column + 3] == 0 if grain == "day" else slice(None)  # day cells of ok calls
                tailed.update(day_tails.tail_blobs(cells[ok], held[ok, day_column], held[ok, day_column + 1],
                                                   _numbers_per_call(held[ok, values_column:]), tail_starts))
        sketched = np.concatenate([np.full(len(cells), grain != FAILED_DAY) for cells, grain in zip(cell_of, grains)])
        cell_of = np.concatenate(cell_of)
        values = np.concatenate([held[:, values_column:] for held in held_calls])
        # Every cell number has calls, so cell i's numbers are row i.
        _, numbers = quarters.numbers_per_group(cell_of, _numbers_per_call(values))
        numbers = numbers.T
        sketches = sketch.SketchSet()
        sketches.add_values([(cell_of[sketched][:, None] * len(METRICS) + np.arange(len(METRICS))).ravel()],
                            values[sketched][:, 1:].ravel())
        encoded = sketches.encoded()
        cells = range(len(cell_keys))
        return CellTable(cell_keys, [column.tolist() for column in numbers],
                         [[encoded.get(i * len(METRICS) + m, b"") for i in cells] for m in range(len(METRICS))]
                         + [[tailed.get(i, b"") for i in cells]]
                         + [[quartered.get(i, NO_QUARTERS)[b] for i in cells] for b in range(len(QUARTER_BLOBS))])

    @staticmethod
    def _starts(grain, days, day_of_call, second_of_call):
        """(the sorted starts of the cells of `grain` holding calls, each call's index into them)."""
        zone = local_days.zone_of(grain)
        if zone is not None:
            return local_days.starts_of_calls(buckets.zone(zone), days, day_of_call, second_of_call)
        starts = sorted({floor(day, grain) for day in days})
        position = {start: i for i, start in enumerate(starts)}
        return starts, np.array([position[floor(day, grain)] for day in days])[day_of_call]


NO_QUARTERS = (b"", b"", b"")


def _tail_starts(cell_keys, cell_of, starts_of_day):
    """{cell number: the quarters its day's tails start at} of the UTC day
    cells `cell_of` holds, from `starts_of_day` {UTC midnight: those quarters}."""
    return {cell: starts_of_day[cell_keys[cell][1]] for cell in np.unique(cell_of).tolist()}


def _full_key(shape, kept):
    """The KEY values of a cell of `shape` whose kept values are `kept` ('' for the others)."""
    if shape == KEY:  # the day cells' shape, most of a batch's keys: already whole
        return kept
    kept = kept if len(shape) > 1 else (kept,)  # itemgetter of one index gives the value alone
    values = dict(zip(shape, kept))
    return tuple(values.get(name, "") for name in KEY)


def _numbers_per_call(values):
    """Each call's CellNumbers.numbers() [n x 11] (its count of 1, its cost,
    then each metric as its sum, minimum and maximum) from `values` (cost,
    then METRICS): what quarters.numbers_per_group adds up per cell."""
    return np.column_stack([np.ones(len(values), dtype=np.int64), values[:, 0]]
                           + [values[:, 1 + m] for m in range(len(METRICS)) for _ in range(3)])


def _quarter_blobs(cell_of, quarter, values, tail_starts):
    """{cell number: (quarters, quarter_sketches, tail_sketches)} of calls in
    cells `cell_of`, at quarters of the day `quarter`, with `values` (cost,
    then METRICS), the tails of each cell's day beginning at `tail_starts`
    {cell number: [quarter]} (app/quarters.py)."""
    sub = cell_of * quarters.QUARTERS_A_DAY + quarter
    subs, numbers = quarters.numbers_per_group(sub, _numbers_per_call(values))
    entry_sub = np.repeat(sub, len(METRICS))  # a sketch entry per call and metric
    entry_metric = np.tile(np.arange(len(METRICS)), len(sub))
    entry_bin = sketch.bin_of(values[:, 1:].ravel())
    blobs = {}
    number_cells, entry_cells = subs // quarters.QUARTERS_A_DAY, entry_sub // quarters.QUARTERS_A_DAY
    for cell in np.unique(number_cells).tolist():
        rows, entries = number_cells == cell, entry_cells == cell
        entry_quarter, metric, bins = entry_sub[entries] % quarters.QUARTERS_A_DAY, entry_metric[entries], \
            entry_bin[entries]
        ones = np.ones(len(bins), dtype=np.int64)
        blobs[cell] = (quarters.encoded_numbers(subs[rows] % quarters.QUARTERS_A_DAY, numbers[rows]),
                       quarters.encoded_pairs(entry_quarter, metric, bins, ones),
                       quarters.encoded_pairs(*quarters.tails(entry_quarter, metric, bins, ones, tail_starts[cell])))
    return blobs


def merged(*sketch_maps):
    """{key: [a sketch per metric, the tails' numbers, then the QUARTER_BLOBS]}
    of several maps {key: those blobs, or a prefix of them (a cell's upsert
    returns those its grain holds: cells.blobs_of)}, added key by key."""
    index, groups, parts, tail_parts, quarter_parts = {}, [], [], {}, {}
    for sketch_map in sketch_maps:
        for key, blobs in sketch_map.items():
            number = index.setdefault(key, len(index))
            groups += [number * len(METRICS) + i for i in range(len(METRICS))]
            parts += blobs[:len(METRICS)]
            if len(blobs) > TAILS_AT and blobs[TAILS_AT]:
                tail_parts.setdefault(key, []).append(blobs[TAILS_AT])
            if any(blobs[QUARTERS_AT:]):
                quarter_parts.setdefault(key, []).append(blobs[QUARTERS_AT:])
    sketches = sketch.SketchSet()
    sketches.add_sketches([groups], parts)
    encoded = sketches.encoded()
    tails = day_tails.merged(tail_parts) if tail_parts else {}
    return {key: [encoded.get(number * len(METRICS) + i, b"") for i in range(len(METRICS))] + [tails.get(key, b"")]
            + (quarters.merged(quarter_parts[key]) if key in quarter_parts else list(NO_QUARTERS))
            for key, number in index.items()}
