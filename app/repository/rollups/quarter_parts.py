"""Parts of UTC days read from the quarter hours of model_day cells (app/quarters.py).

Where an answer is grouped and filtered by no more than model and status,
`approximate` (read.py) takes the edges that no whole UTC day covers from
these instead of raw calls, down to the quarter hour: a bucket of a series
in any zone (every local midnight and hour is a UTC quarter hour) is whole
days and quarters, with raw calls only for what is finer (a window's ends
that are not on a quarter hour).

The numbers of a part are its quarters' records added up (minima and
maxima kept: exact). Its sketches are its quarters' pairs added up, or,
when it holds more than half of its day, the day's sketch with the pairs
of the quarters outside it subtracted (bin counts subtract exactly): a
local day is then one day sketch and at most 48 quarters' pairs, wherever
its midnight falls. Where the cell holds the tails a part's ends need,
whole (a named zone's local days: app/quarters.py), the part is a tail, or
the day sketch, less a tail, and no quarter's pairs are read. Minima and
maxima never subtract, and never need to.
"""
import numpy as np
from peewee import SQL

from ... import quarters
from ...db import fetch_all
from ...models import UsageRollup
from ...rollups import END_OF_TIME, KEPT, METRICS, MODEL_DAY, following
from ...rollups import floor as rollup_floor
from ..scans import literals
from .cells import METRIC_SKETCHES

HALF_DAY = quarters.QUARTERS_A_DAY // 2
# Totals rows (scans.cells_of_rows): calls, failed, ok calls, ok cost, then
# per metric sum, minimum, maximum.
TOTALS_MINIMA = [5 + 3 * m for m in range(len(METRICS))]
TOTALS_MAXIMA = [6 + 3 * m for m in range(len(METRICS))]
# The columns of a model_day cell that Parts reads (its quarters' pairs apart), and where they are.
ROW = [UsageRollup.cell_start, UsageRollup.model, UsageRollup.status,
       *(getattr(UsageRollup, name) for name in METRIC_SKETCHES),
       UsageRollup.quarters, UsageRollup.tail_sketches, UsageRollup.id]
MODEL, STATUS, SKETCHES = 1, 2, slice(3, 3 + len(METRICS))
QUARTERS, TAILS, ID = 3 + len(METRICS), 4 + len(METRICS), 5 + len(METRICS)


def serves(names):
    """Whether model_day cells can answer a key and filters of `names` (column names)."""
    return set(names) <= set(KEPT[MODEL_DAY])


def split(raw_ranges, horizon):
    """(raw ranges left, parts): each raw range (window index, lo, hi) gives
    its whole UTC quarter hours from the retention horizon on (model_day
    cells of pruned days are deleted with their calls) as parts (window
    index, day, first quarter, end quarter) within one UTC day each; what
    remains stays raw."""
    raw, parts = [], []
    for i, lo, hi in raw_ranges:
        first = _ceil(lo if horizon is None else max(lo, horizon))
        end = min(_floor(hi), END_OF_TIME)
        if first >= end:
            raw.append((i, lo, hi))
            continue
        raw += [(i, a, b) for a, b in ((lo, first), (end, hi)) if a < b]
        day = rollup_floor(first, "day")
        while day < end:  # a raw range spans two UTC days at most
            next_day = following(day, "day")
            a, b = max(first, day), min(end, next_day)
            parts.append((i, day, (a - day) // quarters.QUARTER, (b - day) // quarters.QUARTER))
            day = next_day
    return raw, parts


def _floor(moment):
    return moment.replace(minute=moment.minute - moment.minute % 15, second=0, microsecond=0)


def _ceil(moment):
    start = _floor(moment)
    return start if start == moment else start + quarters.QUARTER


class Parts:
    """The numbers and sketch pieces of `parts` (of disjoint windows) for a
    key of `key_names` and sketches keyed by `sketch_names`, under `filters`
    ({column: [values]}): one statement, the model_day cells of their days,
    and one more for the quarters' pairs of the cells whose tails do not serve.

    `totals`: rows as scans.cells_of_rows reads them, keyed (window index,
    *key). `sketch_keys`: the (window index, *sketch key) of the pieces;
    `day_sketches`: [(sketch key number, [a sketch per metric])];
    `pairs`: (sketch key numbers, metric numbers, bins, counts), the counts
    negative where subtracted."""

    def __init__(self, filters, key_names, sketch_names, parts):
        days = sorted({day for _, day, _, _ in parts})
        day_number = {day: d for d, day in enumerate(days)}
        # The window of each (day, quarter) in a part, and of each day's
        # part holding more than half of it (at most one: windows are disjoint).
        owner = np.full((len(days), quarters.QUARTERS_A_DAY), -1, dtype=np.int64)
        big = np.full(len(days), -1, dtype=np.int64)
        for i, day, first, end in parts:
            owner[day_number[day], first:end] = i
            if end - first > HALF_DAY:
                big[day_number[day]] = i
        parts_of_day = {}
        for i, day, first, end in parts:
            parts_of_day.setdefault(day_number[day], []).append((i, first, end))
        rows = self._rows(filters, days)
        self.totals = self._totals(rows, day_number, owner, key_names)
        self.sketch_keys, self.day_sketches, self.pairs = [], [], None
        self._sketches([row for row in rows if row[STATUS] == "ok"], day_number, owner, big, parts_of_day,
                       sketch_names)

    @staticmethod
    def _rows(filters, days):
        """The model_day cells of `days`, as tuples (ROW columns, the
        `quarters` records decoded: quarters.records)."""
        where = (UsageRollup.grain == MODEL_DAY) & UsageRollup.cell_start.in_(SQL(literals(days)))
        for name, values in filters.items():
            where &= getattr(UsageRollup, name).in_(values)
        query = UsageRollup.select(*ROW).where(where)
        # fetch_all: bytea in PostgreSQL's binary format, not hex text to decode (a
        # series by model of 30 days in Asia/Kolkata at 10M calls reads 22 MB: 188 -> 93 ms).
        return [(UsageRollup.cell_start.python_value(row[0]), *row[1:QUARTERS], quarters.records(bytes(row[QUARTERS])),
                 *row[QUARTERS + 1:]) for row in fetch_all(query)] if days else []

    @staticmethod
    def _quarter_sketches(ids):
        """{cell id: its quarter_sketches}: read apart, for the cells whose tails do not serve."""
        query = UsageRollup.select(UsageRollup.id, UsageRollup.quarter_sketches).where(UsageRollup.id.in_(ids))
        return dict(fetch_all(query)) if ids else {}

    @staticmethod
    def _key(row, names):
        values = {"model": row[MODEL], "status": row[STATUS]}
        return tuple(values[name] for name in names)

    def _totals(self, rows, day_number, owner, key_names):
        keys, codes, numbers = {}, [], []
        for row in rows:
            found, values = row[QUARTERS]
            windows = owner[day_number[row[0]], found]
            kept = windows >= 0
            key = keys.setdefault(self._key(row, key_names), len(keys))
            codes.append(windows[kept])
            numbers.append(_as_totals(values[kept], row[STATUS] == "ok", row[STATUS] == "error", key))
        if not codes:
            return []
        codes, numbers = np.concatenate(codes), np.concatenate(numbers)
        # Group by (window, key): columns 0..3 add, then sum, min, max per metric.
        groups = codes * len(keys) + numbers[:, -1]
        groups_found, merged = quarters.numbers_per_group(groups, numbers[:, :-1], TOTALS_MINIMA, TOTALS_MAXIMA)
        key_of = list(keys)
        rows_out = []
        for group, values in zip(groups_found.tolist(), merged.tolist()):
            calls, failed, ok_calls, cost, *metrics = values
            row = [group // len(keys), *key_of[group % len(keys)], calls, failed, ok_calls, cost]
            for m in range(len(METRICS)):
                total, low, high = metrics[3 * m: 3 * m + 3]
                row += [total, low, high] if ok_calls else [None, None, None]
            rows_out.append(row)
        return rows_out

    def _sketches(self, rows, day_number, owner, big, parts_of_day, sketch_names):
        keys = {}
        key_numbers, metric_numbers, bins, counts = [], [], [], []

        def add(windows, found, sign):
            """The pairs `found`, each to its window's key (`windows`), times `sign`."""
            # A window or two per row: numbered once each, not once per pair
            # (1.5 million pairs for 30 days of Kathmandu at 10M calls).
            if windows.min() == windows.max():
                which, windows_found = np.zeros(len(windows), dtype=np.int64), windows[:1]
            else:
                windows_found, which = np.unique(windows, return_inverse=True)
            numbers = [keys.setdefault((w, *name), len(keys)) for w in windows_found.tolist()]
            key_numbers.append(np.asarray(numbers, dtype=np.int64)[which])
            metric_numbers.append(found["metric"].astype(np.int64))
            bins.append(found["bin"].astype(np.int64))
            counts.append(sign * found["count"].astype(np.int64))

        def day_sketch(window, name, row):
            number = keys.setdefault((window, *name), len(keys))
            self.day_sketches.append((number, [bytes(s) for s in row[SKETCHES]]))

        # Each part [first, end) of a day is its tail from `first` (the day
        # from 0) less its tail from `end` (nothing from the day's end), where
        # the cell holds those tails whole; else its quarters' pairs.
        by_quarters = []
        for row in rows:
            d, name = day_number[row[0]], self._key(row, sketch_names)
            day_parts = parts_of_day[d]
            wanted = {q for _, first, end in day_parts for q in (first, end) if 0 < q < quarters.QUARTERS_A_DAY}
            tails = quarters.pairs(bytes(row[TAILS]))
            found, values = row[QUARTERS]
            if wanted - quarters.whole_tails(tails, found, values[:, 0], wanted):
                by_quarters.append(row)
                continue
            for window, first, end in day_parts:
                for q, sign in ((first, 1), (end, -1)):
                    if q == 0:
                        day_sketch(window, name, row)
                    elif q < quarters.QUARTERS_A_DAY:
                        tail = tails[tails["quarter"] == q]
                        if len(tail):
                            add(np.full(len(tail), window), tail, sign)
        # The quarters whose pairs some part adds or subtracts: those outside
        # the day's big part (a day in Asia/Kolkata reads 22 of 96 quarters'
        # pairs), taken before anything else is done with the pairs.
        read = (owner != big[:, None]) & ((owner >= 0) | (big[:, None] >= 0))
        pairs_of = self._quarter_sketches([row[ID] for row in by_quarters])
        for row in by_quarters:
            d, name = day_number[row[0]], self._key(row, sketch_names)
            if big[d] >= 0:  # the day's sketch, for the part holding most of it
                day_sketch(int(big[d]), name, row)
            found = quarters.pairs(bytes(pairs_of[row[ID]]))
            found = found[read[d, found["quarter"]]]
            if not len(found):
                continue
            # + the pairs of quarters in a small part; - all of them from the big part.
            windows = owner[d, found["quarter"]]
            small = windows >= 0
            if small.any():
                add(windows[small], found[small], 1)
            if big[d] >= 0:
                add(np.full(len(found), big[d]), found, -1)
        self.sketch_keys = list(keys)
        if key_numbers:
            self.pairs = tuple(np.concatenate(parts) for parts in (key_numbers, metric_numbers, bins, counts))


def _as_totals(values, ok, error, key):
    """Per record: calls, failed, ok calls, ok cost, then per metric its sum,
    minimum and maximum over ok calls (neutral where none), then the key number."""
    calls = values[:, 0]
    out = np.zeros((len(values), 4 + 3 * len(METRICS) + 1), dtype=np.int64)
    out[:, 0] = calls
    out[:, 1] = calls if error else 0
    if ok:
        out[:, 2], out[:, 3] = calls, values[:, 1]
        out[:, 4:4 + 3 * len(METRICS)] = values[:, 2:2 + 3 * len(METRICS)]
    else:
        out[:, TOTALS_MINIMA] = np.iinfo(np.int64).max  # minima of nothing
        out[:, TOTALS_MAXIMA] = -1  # maxima of nothing
    out[:, -1] = key
    return out

