"""Reading windows from cells, and from raw calls for their edges: `approximate`."""
import numpy as np

from ... import local_days, retention, statistics
from ...buckets import zone
from ...db import database, fetch_all, pipelined
from ...rollups import (BEGINNING, END_OF_TIME, FAILED_DAY, KEPT, METRICS, MODEL_DAY, OPEN_MONTH, TENANT_DAY,
                        TENANT_MONTH, cover, following, starts_between)
from ...sketch import SketchSet
from .. import scans
from ..columns import COLUMNS, METRIC_COLUMNS, OK
from ..scans import Scan
from . import quarter_parts, tail_parts
from .cell_source import CellSource, plan_for_cells
from .quarter_parts import TOTALS_MAXIMA, TOTALS_MINIMA
from .read_state import days_from, state_and_months
from .window_covers import in_zone, past_the_latest


class RollupsNotBuilt(Exception):
    """Calls were stored before the rollups existed, and no rebuild has run since."""

    def __str__(self):
        return ("percentiles=approximate needs the rollups, which are not built yet: run "
                "`flask --app wsgi rollups rebuild`. percentiles=exact works meanwhile.")


def approximate(filters, key_names, windows, sketch_names, levels):
    """Statistics of each window from cells, and raw rows for the edges.

    `filters` {column name: [values]}; `key_names` the group key of the
    totals (column names); `windows` [(start, end)], open ends None;
    `sketch_names` the (coarser or equal) key the finest percentiles group
    by. Returns ({(window index, *key): [aggregates]} (count, failed count,
    ok count, ok cost, then each metric's sum, minimum and maximum over ok
    calls), [{level key: {metric: {pct: value}}} for each of `levels`]), a
    level being a function from (window
    index, *sketch key) to the key its percentiles are merged by (sketches
    merge; exact percentiles do not). The first level is the finest: each
    other level's key must follow from the first's (tenant, then everyone),
    as each of its sketches is merged from the first level's. Every number
    but the percentiles is exact. A few statements, as many whatever the windows: the rollups'
    state (and the pruned range), the days holding cells in months not
    sealed (when the windows reach them), the totals and the sketches of
    each grain's cells (of the tenant grains where they serve: `_grain`),
    the model_day cells of the edges' quarter hours (quarter_parts.Parts:
    one or two), the day cells of first part-days' tails (tail_parts.Tails:
    two), and the totals and values of the raw edges. Raw edges
    meeting pruned calls: retention.BeforeHorizon, before any but the first
    statement.
    """
    needs_rebuild, sealed_before, first_month, last_month, pruned, zones, stored_days, latest = state_and_months()
    if needs_rebuild:
        raise RollupsNotBuilt()
    plan_for_cells()
    utc_covers = [cover(start, end, sealed_before) for start, end in past_the_latest(windows, latest)]
    by_model = quarter_parts.serves({*filters, *key_names, *sketch_names})

    def covers_for(names):
        """UTC's covers, or a named zone's where they leave fewer raw rows,
        for a key of `names`: the zones' day cells keep tenant and status
        (/v1/usage/all's totals keep operation and model too, its
        percentiles per tenant do not). Where model_day cells serve too
        (grouped and filtered by no more than status), UTC's: a named
        zone's local day is then a model_day cell's day sketch and two of
        its tails (quarter_parts.Parts), a sketch per model instead of one
        per tenant (the dashboard's series by local day at 10M calls: 53
        against 33 ms in process)."""
        if not zones or by_model or _grain("day", filters, names) != TENANT_DAY:
            return utc_covers
        return in_zone(windows, utc_covers, zones, stored_days, latest)
    totals_covers = covers_for(key_names)
    sketch_covers = (totals_covers if _grain("day", filters, sketch_names) == _grain("day", filters, key_names)
                     else covers_for(sketch_names))
    totals_raw, sketch_raw = ([(i, lo, hi) for i, c in enumerate(covers) for lo, hi in c.raw]
                              for covers in (totals_covers, sketch_covers))
    parts, tails = [], []
    if by_model:  # the edges' whole quarter hours from model_day cells
        totals_raw, parts = quarter_parts.split(totals_raw, pruned.horizon)
        sketch_raw = totals_raw
    elif tail_parts.serves({*filters, *key_names}):  # first part-days from day cells' tails
        totals_raw, tails = tail_parts.split(totals_raw, zones)
    retention.refuse_pruned(pruned, [(lo, hi) for _, lo, hi in totals_raw + sketch_raw])

    def cell_ranges(covers):
        return [(i, grain, max(lo, first_month) if grain == "month" else lo,
                 min(hi, following(last_month, "month")) if grain == "month" else hi)
                for i, c in enumerate(covers) for grain, lo, hi in c.cells
                if grain != "month" or first_month is not None]
    totals_ranges = cell_ranges(totals_covers)
    sketch_ranges = totals_ranges if sketch_covers is totals_covers else cell_ranges(sketch_covers)
    # The days of months not sealed are those holding cells (the current
    # month's, a few later ones), not every day of the calendar to its end.
    open_days = days_from(sealed_before) if any(hi > sealed_before for _, grain, _, hi in totals_ranges + sketch_ranges
                                                  if grain in ("day", OPEN_MONTH)) else []

    def plan_of(ranges):
        """[(grain, [(window index, cell start)])] of cell `ranges`: whole
        open months are their days; answers by no more than model and
        status read model_day cells, but for pruned days (their model_day
        cells go with their calls)."""
        def starts(grain):
            if local_days.zone_of(grain):
                tz = zone(local_days.zone_of(grain))
                return [(i, start) for i, g, lo, hi in ranges if g == grain
                        for start in local_days.day_starts(lo, hi, tz)]
            if grain == "month":
                return [(i, start) for i, g, lo, hi in ranges if g == grain for start in starts_between(lo, hi, grain)]
            return [(i, start) for i, g, lo, hi in ranges if g == grain
                    for start in starts_between(lo, min(hi, sealed_before), "day")
                    + [day for day in open_days if lo <= day < hi]]
        day_starts = starts("day") + starts(OPEN_MONTH)
        model_days = [(i, day) for i, day in day_starts
                      if by_model and (pruned.horizon is None or day >= pruned.horizon)]
        if model_days:
            day_starts = [(i, day) for i, day in day_starts if pruned.horizon is not None and day < pruned.horizon]
        zone_grains = sorted({g for _, g, _, _ in ranges if local_days.zone_of(g)})
        return [("day", day_starts), ("month", starts("month")), (MODEL_DAY, model_days),
                *((grain, starts(grain)) for grain in zone_grains)]
    totals_plan = plan_of(totals_ranges)
    sketch_plan = totals_plan if sketch_ranges is totals_ranges else plan_of(sketch_ranges)
    totals, sketches, groups = {}, SketchSet(), [{} for _ in levels]
    examples = {}  # a key of the first level -> a (window index, *key) that has it

    def number_of(key):
        """The sketch group of a (window index, *sketch key) at the first level."""
        finest = levels[0](key)
        examples.setdefault(finest, key)
        return _group_number(groups, groups[0], finest)

    def add_to_sketches(rows, width, add):
        """Rows of (key of `width` columns, a value or sketch per metric) to
        the sketch group of their key at the first level."""
        numbers = [number_of(tuple(row[:width])) for row in rows]
        for m in range(len(METRICS)):
            add([[number * len(METRICS) + m for number in numbers]], [row[width + m] for row in rows])

    # Each grain's cells by their own statement: see CellSource. Answers by
    # no more than tenant and status read the tenant grains (`_grain`). The
    # sketches' rows come first; the cells' totals and the raw edges' then
    # run on the server while Python merges the sketches (`pipelined`:
    # /v1/usage/all over 30 days at 10M calls spends 40 ms adding up 36,000
    # day cells and 28 ms merging 1,500 tenants' days of sketches; in
    # Asia/Kolkata about 20 ms more adding up the raw calls of its first
    # part-day, 18:30 to 24:00 UTC).
    sketch_rows = [(fetch_all(source.sketches()), source.width, sketches.add_sketches)
                   for source in (CellSource(filters, sketch_names, _grain(grain, filters, sketch_names), starts)
                                  for grain, starts in sketch_plan if starts)]
    found_parts = quarter_parts.Parts(filters, key_names, sketch_names, parts) if parts else None

    def edges(names, ranges):
        return Scan(scans.matching(filters), tuple(COLUMNS[name] for name in names), ranges=ranges)
    if sketch_raw:
        scan = edges(sketch_names, sketch_raw)
        rows = database.execute(scan.rows(*METRIC_COLUMNS.values(), where=OK)).fetchall()
        sketch_rows.append((rows, len(scan.key_columns), sketches.add_values))
    totals_sources = [source for grain, starts in totals_plan if starts
                      for source in _totals_sources(filters, key_names, grain, starts)]
    statements = [source.totals().sql() for source in totals_sources]
    found_tails = tail_parts.Tails(filters, key_names, tails) if tails else None
    if found_tails:
        statements += found_tails.statements()
    if totals_raw:  # the raw edges' totals in the same pipeline (last)
        raw_scan = edges(key_names, totals_raw)
        raw_statement, raw_rows_of = scans.aggregate_statement(raw_scan)
        statements.append(raw_statement)
    with pipelined(statements) as totals_rows:
        for rows, width, add in sketch_rows:
            add_to_sketches(rows, width, add)
        if found_parts:
            _add_quarter_parts(found_parts, len(key_names), totals, sketches, number_of)
        for level, level_groups in zip(levels[1:], groups[1:]):
            sketches.count_also_in({groups[0][finest] * len(METRICS) + m:
                                    _group_number(groups, level_groups, level(key)) * len(METRICS) + m
                                    for finest, key in examples.items() for m in range(len(METRICS))})
        found, sizes, _, values = sketches.at_ranks(statistics.ranks_needed)
    for source, rows in zip(totals_sources, totals_rows):
        _add_totals(totals, rows, source.width)
    if found_tails:
        _add_totals(totals, found_tails.totals_rows(totals_rows[len(totals_sources):]), 1 + len(key_names))
    if totals_raw:
        _add_totals(totals, raw_rows_of(totals_rows[-1]), len(raw_scan.key_columns))
    estimates = dict(zip(found.tolist(), statistics.percentiles_of_groups(sizes, values)))
    percentiles = [{} for _ in levels]
    for level_percentiles, level_groups in zip(percentiles, groups):
        for level_key, number in level_groups.items():
            level_percentiles[level_key] = {
                name: estimates[number * len(METRICS) + m]
                for m, name in enumerate(METRICS) if number * len(METRICS) + m in estimates}
    return totals, percentiles


def reads_cells(windows, names):
    """Whether any of `windows` [(start, end)] holds a whole cell for an
    answer keyed and filtered by `names`: a whole UTC day, or for
    model_day cells a whole UTC quarter hour. One that holds none (an hourly
    series of one tenant, a day of it in Europe/Berlin) is raw rows alone:
    `approximate` would put each of its values in a sketch, where the exact
    path reads them once and lets the database rank them (an hourly series
    of one tenant over 90 days at 1M calls: 281 against 97 ms on PostgreSQL)."""
    if quarter_parts.serves(names):
        return any(quarter_parts.split([(0, start or BEGINNING, end or END_OF_TIME)], None)[1]
                   for start, end in windows)
    if any(cover(start, end).cells for start, end in windows):
        return True
    return set(names) <= set(KEPT[TENANT_DAY]) and any(
        local_days.cover(start, end, zone(name)) for name in local_days.named()
        for start, end in windows if start is not None and end is not None)


# Which aggregates add up (counts, cost, sums); the others are minima and maxima.
_ADDED = [i for i in range(4 + 3 * len(METRICS)) if i not in TOTALS_MINIMA + TOTALS_MAXIMA]


def _add_totals(totals, rows, width):
    """Add `rows` (a key of `width` values, then aggregates as
    scans.cells_of_rows reads them) to `totals` {key: [aggregates]}: counts,
    cost and sums add up, the least minimum and the greatest maximum are
    kept (None: no ok call). Plain lists, not a Cell per row: a series by
    tenant over 90 days merges 9,000 rows into 4,500 groups."""
    for row in rows:
        key, (count, failed, ok_calls, cost, *metrics) = tuple(row[:width]), row[width:]
        if not count:
            continue  # no GROUP BY and no records: the aggregate of nothing
        aggregates = [int(count), int(failed), int(ok_calls or 0), int(cost or 0)]
        for m in range(len(METRICS)):
            aggregates += [int(metrics[3 * m] or 0), metrics[3 * m + 1], metrics[3 * m + 2]]
        found = totals.get(key)
        if found is None:
            totals[key] = aggregates
            continue
        for i in _ADDED:
            found[i] += aggregates[i]
        for i in TOTALS_MINIMA:
            if aggregates[i] is not None and (found[i] is None or aggregates[i] < found[i]):
                found[i] = aggregates[i]
        for i in TOTALS_MAXIMA:
            if aggregates[i] is not None and (found[i] is None or aggregates[i] > found[i]):
                found[i] = aggregates[i]


def _add_quarter_parts(found, width, totals, sketches, number_of):
    """The totals and sketch pieces of quarter_parts.Parts `found` into
    `totals` and `sketches` (keys of `width` columns after the window index;
    `number_of` gives a sketch key's group)."""
    _add_totals(totals, found.totals, 1 + width)
    numbers = np.array([number_of(key) for key in found.sketch_keys], dtype=np.int64)
    if found.day_sketches:
        owners = [number for number, _ in found.day_sketches]
        sketches.add_sketches([[numbers[owner] * len(METRICS) + m for owner in owners for m in range(len(METRICS))]],
                              [blob for _, blobs in found.day_sketches for blob in blobs])
    if found.pairs is not None:
        key_numbers, metric_numbers, bins, counts = found.pairs
        sketches.add_pairs(numbers[key_numbers] * len(METRICS) + metric_numbers, bins, counts)


def _grain(grain, filters, names):
    """The grain whose cells serve `grain`'s (day or month; MODEL_DAY is
    its own) for a key of `names` under `filters`: grouped and filtered by
    no more than tenant and status, TENANT_DAY or TENANT_MONTH (one cell per
    tenant and status, not one per operation, model and error class too:
    all tenants' percentiles over 30 days at 1M calls read 1,500 sketches
    instead of about 40,000)."""
    tenant_grain = {"day": TENANT_DAY, "month": TENANT_MONTH}.get(grain)
    return tenant_grain if tenant_grain and {*filters, *names} <= set(KEPT[tenant_grain]) else grain


def _totals_sources(filters, key_names, grain, starts):
    """The CellSources of the totals of `grain`'s cells at `starts`. Day
    cells keyed and filtered by no error class are those of ok calls and
    the FAILED_DAY cells, one per tenant, operation and model instead of
    one per error class (/v1/usage/all over 30 days at 10M calls: 36,000
    cells instead of 72,000)."""
    served = _grain(grain, filters, key_names)
    if served != "day" or "error_class" in {*filters, *key_names}:
        return [CellSource(filters, key_names, served, starts)]
    return [CellSource(filters, key_names, "day", starts, status="ok"),
            CellSource(filters, key_names, FAILED_DAY, starts, status="error")]


def _group_number(groups, level_groups, level_key):
    """A number for (level, level key), unique across all levels."""
    if level_key not in level_groups:
        level_groups[level_key] = sum(len(g) for g in groups)
    return level_groups[level_key]
