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
with `CellBuilder` (app/cell_builder.py), so they cannot disagree.

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
read them instead of raw rows (app/repository/rollups/window_covers.py, `in_zone`).
Day cells of ok calls and FAILED_DAY cells keep their day's tails from
those zones' local midnights on (app/day_tails.py): the first part-day of
a window starting at one, for totals the zones' cells cannot give.

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


from . import local_days

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


# The blobs of a cell, the columns SKETCHES of usage_rollup: a sketch per
# metric, the numbers of its day's tails (empty but in day cells of ok calls
# and failed_day cells: app/day_tails.py), then its quarter hours (empty but
# in model_day cells: app/quarters.py).
TAIL_NUMBERS = "tail_numbers"
QUARTER_BLOBS = ("quarters", "quarter_sketches", "tail_sketches")
TAILS_AT, QUARTERS_AT = len(METRICS), len(METRICS) + 1  # where they are among a cell's blobs
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
