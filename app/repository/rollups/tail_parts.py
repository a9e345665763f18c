"""First part-days read from day cells' tails (app/day_tails.py).

A window starting at a local midnight of a ready zone inside a UTC day D,
whose totals read UTC day cells (keyed by operation or model, which the
zones' day cells do not keep), begins with the part of D from that midnight
on: D's tail. `approximate` (read.py) reads it from D's day cells of ok calls
and failed_day cells instead of raw calls: their records from the tail's
quarter on add up to exactly the numbers the raw calls give.
"""
from ... import day_tails, local_days, quarters
from ...buckets import zone
from ...rollups import END_OF_TIME, FAILED_DAY, METRICS, following
from ...rollups import floor as rollup_floor
from .cell_source import CellSource


def serves(names):
    """Whether tails can give the totals of a key and filters of `names`: the
    cells holding tails keep every error class together (day cells of ok
    calls, failed_day cells)."""
    return "error_class" not in names


def split(raw_ranges, zones):
    """(raw ranges left, tails): of each raw range (window index, lo, hi)
    that starts inside a UTC day D at a local midnight of one of `zones`
    ({name: whole from}: those ready and named) whose cells are whole on D,
    and reaches D's end, the tail (window index, D, its first quarter);
    the rest of the range stays raw."""
    found = [(zone(name), whole_from) for name, whole_from in zones.items()]
    raw, tails = [], []
    for i, lo, hi in raw_ranges:
        day = rollup_floor(lo, "day")
        end = following(day, "day")
        offset = lo - day
        if found and offset and not offset % quarters.QUARTER and end <= min(hi, END_OF_TIME) \
                and any(_is_midnight(lo, day, end, tz) for tz, whole_from in found
                        if whole_from is None or day >= whole_from):
            tails.append((i, day, offset // quarters.QUARTER))
            raw += [(i, end, hi)] if end < hi else []
        else:
            raw.append((i, lo, hi))
    return raw, tails


def _is_midnight(moment, day, end, tz):
    try:
        return moment in local_days.day_starts(day, end, tz)
    except OverflowError:  # a day at the calendar's ends
        return False


class Tails:
    """The statements reading the cells of `tails` (from `split`), and the
    totals rows they give (`totals_rows`)."""

    def __init__(self, filters, key_names, tails):
        starts = [(i, day) for i, day, _ in tails]
        self.quarter_of = {i: quarter for i, _, quarter in tails}  # a window has one tail at most
        self.sources = [CellSource(filters, key_names, "day", starts, status="ok"),
                        CellSource(filters, key_names, FAILED_DAY, starts, status="error")]

    def statements(self):
        return [source.tails().sql() for source in self.sources]

    def totals_rows(self, rows_per_statement):
        """Rows as scans.cells_of_rows reads them (counts over all calls, the
        rest over ok ones) of each cell's tail from its window's quarter on;
        `rows_per_statement` from those of `statements` on (any after them unread)."""
        found = []
        for source, rows in zip(self.sources, rows_per_statement):
            owners, numbers = day_tails.tails_at([bytes(row[-1]) for row in rows],
                                                 [self.quarter_of[int(row[0])] for row in rows])
            for owner, (calls, cost, *metrics) in zip(owners.tolist(), numbers.tolist()):
                key = tuple(rows[owner][:-1])
                if source.status == "ok":
                    found.append((*key, calls, 0, calls, cost, *metrics))
                else:
                    found.append((*key, calls, calls, None, None, *[None] * (3 * len(METRICS))))
        return found
