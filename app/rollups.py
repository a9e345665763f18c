"""Rollups: what a cell is, and how a window is covered by cells and raw rows.

A cell (table usage_rollup) aggregates the calls of one (tenant, operation,
model, status, error_class) whose timestamp falls in one UTC day or month:
counts, cost, and per metric its sum, minimum, maximum and sketch
(`app/sketch.py`). The two grains let any window be covered by few cells:
a month of all tenants is one cell per key, not 30 daily ones. Two more,
TENANT_DAY and TENANT_MONTH, hold a tenant's day or month in one cell per
status (KEPT: the key columns each grain keeps), for answers grouped and
filtered by no more than tenant and status. FAILED_DAY cells hold a day's
failed calls of a (tenant, operation, model), for totals keyed by no
error class.

There are no hourly cells (migration 007 deleted them): at 1M calls over 90
days an hourly cell held 1.3 calls on average, so it cost ingestion a row
write per call, two fifths of its cell writes, and was no faster to read than
the raw row; hourly series and daily series outside UTC were then two to three
times slower with percentiles=approximate than with exact.

Cells are kept by the transaction that inserts the calls, from the rows it
actually created (`app/repository/rollups/keep.py`), and can be recomputed from
llm_call at any time (`flask --app wsgi rollups rebuild`); both build them
with `CellBuilder`, so they cannot disagree.

Sealed months. Month cells exist for the months before `sealed_before`
(usage_rollup_state): the months that have ended, once sealed. Ingestion
writes a call's day and tenant_day cells (DAY_GRAINS), and its month and
tenant_month cells (MONTH_GRAINS) only if its month is sealed (a late
call): a backfill batch of 1000 calls over every tenant and a day touched
some 600 month cells besides its 650 day cells, 14% of the batch's time on
SQLite. The first batch stored in a new month seals the one that ended,
building its month and tenant_month cells from its day cells
(app/repository/rollups/seal.py), and a window's months from
`sealed_before` on (the current one, and any later month holding calls)
are read from their day cells: at most a month of them per key.

A window [start, end) is answered from the cells lying wholly inside it,
the coarsest first (months only where sealed), and from raw llm_call rows for the edges that no whole
UTC day covers (`cover`): at most a day at each end, whatever the history.
So 30 days from now are 29 daily cells (or some days and a month) and two
part-days of raw rows. An answer grouped and filtered by no more than model
and status takes those part-days from the quarter hours of MODEL_DAY cells
instead (app/repository/rollups/quarter_parts.py), down to a UTC quarter
hour: every zone's midnights and hours are whole quarters ("Any time
zone" in docs/precision.md). Other answers over a day in Asia/Kolkata
(+05:30) or Europe/Berlin, which holds no whole UTC day, read raw rows
alone, as with percentiles=exact; every number except the percentiles is
then exactly what the raw rows give.

Zones named by ROLLUP_ZONES get a tenant's local days as cells of their own,
grain `day@<zone>` (app/local_days.py): answers by tenant in such a zone
read them instead of raw rows (app/repository/rollups/read.py, `_in_zone`).

Cells lie in [BEGINNING, END_OF_TIME): December 9999 has no following month
to end its cell, and nothing here steps past END_OF_TIME (`following` stops
there). Every path's cost follows the data present, never the calendar: the
months a read lists lie between the first and the last month holding cells,
and `rollups rebuild|verify` visit only the months holding calls or cells.
So one call dated 9999-12-31 or 0001-01-01 can neither fail every tenant's
answers nor make them walk 120,000 months. Ingestion refuses such calls
(app/timestamp_range.py); `rollups verify` reports any that an older version
stored past END_OF_TIME, which approximate answers of open windows leave out.
"""
import datetime as dt
from dataclasses import dataclass
from operator import itemgetter

import numpy as np

from . import buckets, local_days, quarters, sketch

GRAINS = ("day", "month")  # finest first
# A tenant's month: one cell per (tenant, status), every operation, model and
# error class together (stored as ''). Its sketches give the percentiles of
# a tenant's whole months in one cell instead of one per (operation, model,
# error class): all history of every tenant is then a few hundred sketches.
TENANT_MONTH = "tenant_month"
# A tenant's UTC day, keyed as TENANT_MONTH: the totals and percentiles of
# answers grouped and filtered by no more than tenant and status, a day at
# a time (one cell per tenant, not one per operation, model and error class).
TENANT_DAY = "tenant_day"
# A UTC day of every tenant, one cell per (model, status), with the day's
# quarter hours inside (app/quarters.py): answers grouped and filtered by
# no more than model and status, in any zone.
MODEL_DAY = "model_day"
# A UTC day's failed calls of one (tenant, operation, model), every error
# class together (status 'error', error_class ''), their numbers without
# sketches (percentiles are over ok calls): the totals of answers keyed
# and filtered by no error class add up day cells of ok calls and these,
# not a day cell per error class (30 days at 10M calls: 36,000 cells
# instead of 72,000; migration 018).
FAILED_DAY = "failed_day"
CELL_GRAINS = (*GRAINS, TENANT_MONTH, TENANT_DAY, MODEL_DAY, FAILED_DAY)
# The grains holding a day, and a month.
DAY_GRAINS, MONTH_GRAINS = ("day", TENANT_DAY, MODEL_DAY, FAILED_DAY), ("month", TENANT_MONTH)
# Whole months not sealed, in a Cover: no month cells, their day cells instead.
OPEN_MONTH = "open_month"
METRICS = ("call_duration", "input_tokens", "output_tokens")
KEY = ("tenant_id", "operation", "model", "status", "error_class")
# The KEY columns each grain keeps (the others are stored as '').
KEPT = {"day": KEY, "month": KEY, TENANT_MONTH: ("tenant_id", "status"), TENANT_DAY: ("tenant_id", "status"),
        MODEL_DAY: ("model", "status"), FAILED_DAY: ("tenant_id", "operation", "model", "status")}


def kept(grain):
    """The KEY columns `grain` keeps: KEPT's, and tenant_day's for the zones' day cells (app/local_days.py)."""
    return KEPT[TENANT_DAY] if local_days.zone_of(grain) else KEPT[grain]


# The blobs of a cell: a sketch per metric, then its quarter hours (empty
# but in model_day cells): the columns SKETCHES of usage_rollup.
QUARTER_BLOBS = ("quarters", "quarter_sketches")
# The open ends of a window, as instants aligned to every grain.
BEGINNING = dt.datetime(1, 1, 1, tzinfo=dt.timezone.utc)
END_OF_TIME = dt.datetime(9999, 12, 1, tzinfo=dt.timezone.utc)


def floor(moment, grain):
    """The start of the UTC day or month holding `moment` (aware, UTC), as
    the cells of `grain` start (a grain of DAY_GRAINS or MONTH_GRAINS)."""
    moment = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment if grain in DAY_GRAINS else moment.replace(day=1)


def following(start, grain):
    """The start of the cell after the one starting at `start`, at most
    END_OF_TIME: no cell starts there or later."""
    if start >= END_OF_TIME:
        return END_OF_TIME
    if grain in DAY_GRAINS:
        return start + dt.timedelta(days=1)
    return (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def starts_between(lo, hi, grain):
    """The starts of the cells of `grain` in [lo, hi), `lo` a cell start."""
    starts, hi = [], min(hi, END_OF_TIME)
    while lo < hi:
        starts.append(lo)
        lo = following(lo, grain)
    return starts


def ceil(moment, grain):
    start = floor(moment, grain)
    return start if start == moment else following(start, grain)


@dataclass(frozen=True)
class Cover:
    """Cells ranges [(grain, lo, hi)]: the cells of `grain` with lo <= start < hi;
    and raw ranges [(lo, hi)] of llm_call timestamps."""

    cells: tuple
    raw: tuple


def cover(start, end, sealed_before=END_OF_TIME):
    """The cells and raw edges that together hold exactly the calls of [start, end).

    Open ends (None) are the beginning and the end of time. Each level takes
    the whole cells of its grain inside what the finer levels left: raw rows
    up to the first whole day, days up to the first whole month, and the
    same backwards from `end`. Cells end at END_OF_TIME: a later `end` is
    read from raw rows beyond it. Month cells exist only for the months
    before `sealed_before` (a month start, see "Sealed months" above): whole
    months from it on are OPEN_MONTH ranges, read from their day cells and,
    for percentiles by at most tenant and status, their tenant_month cells.
    """
    lo, hi = start or BEGINNING, end or END_OF_TIME
    inner_lo, inner_hi = ceil(lo, "day"), floor(min(hi, END_OF_TIME), "day")
    if inner_lo >= inner_hi:  # no whole day inside
        return Cover((), ((lo, hi),))
    raw = tuple((a, b) for a, b in ((lo, inner_lo), (inner_hi, hi)) if a < b)
    months_lo, months_hi = ceil(inner_lo, "month"), floor(inner_hi, "month")
    if months_lo >= months_hi:  # no whole month inside
        return Cover((("day", inner_lo, inner_hi),), raw)
    open_lo = min(months_hi, max(months_lo, sealed_before))
    cells = [(grain, a, b) for grain, a, b in (("day", inner_lo, months_lo), ("month", months_lo, open_lo),
                                               (OPEN_MONTH, open_lo, months_hi), ("day", months_hi, inner_hi))
             if a < b]
    return Cover(tuple(cells), raw)


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
    per number of CellNumbers.numbers(), `sketches` a list per metric."""

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
        failed = calls[calls[:, day_column + 3] == 1]
        days = [dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)
                for day in self._days]  # by number, as dicts keep their order
        # Cells are numbered in key order (grain, start, KEY values): a grain
        # at a time, by start, then by the rank of their key (sorting the
        # cells' keys afterwards took 5 of a backfill batch's 110 ms on SQLite).
        grains = sorted(self._grains)
        # Per grain: the cell number of each call it holds, their values (cost, then METRICS).
        cell_keys, cell_of, held_values = [], [], []
        for grain in grains:
            held = failed if grain == FAILED_DAY else calls
            shape = kept(grain)
            column = shapes.index(shape)
            keys = [_full_key(shape, values) for values in self._shapes[shape][1]]
            by_key = sorted(range(len(keys)), key=keys.__getitem__)
            rank = np.empty(len(keys), dtype=np.int64)
            rank[by_key] = np.arange(len(keys))
            starts, start_of_call = self._starts(grain, days, held[:, day_column], held[:, day_column + 2])
            codes, numbers = np.unique(start_of_call * len(keys) + rank[held[:, column]], return_inverse=True)
            cell_of.append(numbers.ravel() + len(cell_keys))
            held_values.append(held[:, values_column:])
            cell_keys += [(grain, starts[code // len(keys)], *keys[by_key[code % len(keys)]])
                          for code in codes.tolist()]
        quartered = {} if MODEL_DAY not in grains else _quarter_blobs(
            cell_of[grains.index(MODEL_DAY)], calls[:, day_column + 1], calls[:, values_column:])
        sketched = np.concatenate([np.full(len(cells), grain != FAILED_DAY) for cells, grain in zip(cell_of, grains)])
        cell_of, values = np.concatenate(cell_of), np.concatenate(held_values)
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


NO_QUARTERS = (b"", b"")


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


def _quarter_blobs(cell_of, quarter, values):
    """{cell number: (quarters, quarter_sketches)} of calls in cells
    `cell_of`, at quarters of the day `quarter`, with `values` (cost, then
    METRICS) (app/quarters.py)."""
    sub = cell_of * quarters.QUARTERS_A_DAY + quarter
    subs, numbers = quarters.numbers_per_group(sub, _numbers_per_call(values))
    entry_sub = np.repeat(sub, len(METRICS))  # a sketch entry per call and metric
    entry_metric = np.tile(np.arange(len(METRICS)), len(sub))
    entry_bin = sketch.bin_of(values[:, 1:].ravel())
    blobs = {}
    number_cells, entry_cells = subs // quarters.QUARTERS_A_DAY, entry_sub // quarters.QUARTERS_A_DAY
    for cell in np.unique(number_cells).tolist():
        rows, entries = number_cells == cell, entry_cells == cell
        blobs[cell] = (quarters.encoded_numbers(subs[rows] % quarters.QUARTERS_A_DAY, numbers[rows]),
                       quarters.encoded_pairs(entry_sub[entries] % quarters.QUARTERS_A_DAY, entry_metric[entries],
                                              entry_bin[entries], np.ones(entries.sum(), dtype=np.int64)))
    return blobs


def merged(*sketch_maps):
    """{key: [a sketch per metric, then the QUARTER_BLOBS]} of several such
    maps, added key by key."""
    index, groups, parts, quarter_parts = {}, [], [], {}
    for sketch_map in sketch_maps:
        for key, blobs in sketch_map.items():
            number = index.setdefault(key, len(index))
            groups += [number * len(METRICS) + i for i in range(len(METRICS))]
            parts += blobs[:len(METRICS)]
            if any(blobs[len(METRICS):]):
                quarter_parts.setdefault(key, []).append(blobs[len(METRICS):])
    sketches = sketch.SketchSet()
    sketches.add_sketches([groups], parts)
    encoded = sketches.encoded()
    return {key: [encoded.get(number * len(METRICS) + i, b"") for i in range(len(METRICS))]
            + (quarters.merged(quarter_parts[key]) if key in quarter_parts else list(NO_QUARTERS))
            for key, number in index.items()}
