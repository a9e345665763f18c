"""Day cells of named time zones (ROLLUP_ZONES): a tenant's local days.

A tenant_day cell holds a UTC day, and a day in Europe/Berlin or
Asia/Kolkata holds no whole UTC day: without more, an answer grouped and
filtered by no more than tenant and status in such a zone (the 90-day series
by tenant) read raw rows, 1.3 s at 1M calls and 13.4 s at 10M on
PostgreSQL. model_day cells cover any zone with their quarter hours, but
they hold every tenant together; quarter hours per tenant would be a row
per call or two (docs/rollups-in-every-zone.md).

So a deployment names the zones its people ask in, `ROLLUP_ZONES=
Europe/Berlin,Asia/Kolkata` (at most MAX_ZONES), and each gets cells of
grain `day@<zone>`: one per (tenant, status, local day), keyed like
tenant_day, starting at the zone's local midnight exactly as the series'
day buckets do (app/buckets.py: 23 or 25 hours on DST days). A window is
then the zone's whole local days from cells and raw rows for what is left
at its two ends (`cover`); `app/repository/rollups/read.py` takes a zone's
cells where they leave fewer raw rows than UTC cells would.

Their life, so that a zone's cells never miss a call they claim to hold:
- ingestion keeps the cells of every zone ROLLUP_ZONES names, in the
  transaction that stores the calls, as it keeps the others;
- `flask --app wsgi rollups rebuild` builds them for the stored history
  and marks the zones *ready* (usage_rollup_state.zone_cells, {zone: the
  first instant its cells are whole from}); reads use a zone's cells only
  while it is ready and named, from that instant on: cells built after a
  prune cannot hold the pruned calls, so that instant is then the
  retention horizon;
- a batch stored by a worker whose ROLLUP_ZONES lacks a ready zone takes
  the zone out of the ready ones (its cells now miss that batch's calls):
  a changed setting takes effect with the rebuild run after every worker
  has it;
- erasing a tenant deletes its cells of every zone; pruning keeps them, as
  it keeps day cells.
"""
import datetime as dt
import json

import numpy as np
from flask import current_app, has_app_context

from . import buckets
from .db import ConfigurationError

PREFIX = "day@"
MAX_ZONES = 8  # each costs ingestion about 200 cell writes per backfill batch
DAY = dt.timedelta(days=1)
# Shorter than any local day but a few days history skipped (Pacific/Apia,
# 2011-12-30): such a day is then raw rows, which hold the same calls.
SHORTEST_DAY = dt.timedelta(hours=22)


def zones_setting(value):
    """ROLLUP_ZONES as set (text or a sequence): a tuple of IANA names, each
    once, at most MAX_ZONES; ConfigurationError naming what is wrong."""
    names = [name.strip() for name in (value.split(",") if isinstance(value, str) else value or ())]
    names = list(dict.fromkeys(name for name in names if name))
    if len(names) > MAX_ZONES:
        raise ConfigurationError(f"ROLLUP_ZONES names {len(names)} zones; at most {MAX_ZONES}.")
    for name in names:
        try:
            buckets.zone(name)
        except ValueError as error:
            raise ConfigurationError(f"ROLLUP_ZONES: {error}") from None
        if len(grain_of(name)) > 64:
            raise ConfigurationError(f"ROLLUP_ZONES: {name!r} is too long a name.")
    return tuple(names)


def named():
    """The zones ROLLUP_ZONES names (none outside an app)."""
    return current_app.config.get("ROLLUP_ZONES", ()) if has_app_context() else ()


def grain_of(name):
    return PREFIX + name


def zone_of(grain):
    """The zone name of a grain of this module's cells, else None."""
    return grain[len(PREFIX):] if grain.startswith(PREFIX) else None


def ready_of(text):
    """{zone: whole from (aware UTC, or None: from the beginning)} of usage_rollup_state.zone_cells."""
    return {name: None if start is None else dt.datetime.fromisoformat(start)
            for name, start in json.loads(text or "{}").items()}


def text_of(ready):
    return json.dumps({name: None if start is None else start.isoformat() for name, start in sorted(ready.items())})


def readable(ready):
    """{zone: whole from} of the ready zones that ROLLUP_ZONES still names: those reads may use."""
    return {name: start for name, start in ready.items() if name in named()}


def midnight_at_or_after(moment, tz):
    start, end = buckets.unit_containing(moment, "day", tz)
    return start if start == moment else end


def day_starts(lo, hi, tz):
    """The local midnights m of `tz` with lo <= m < hi: the starts of its cells there."""
    starts, start = [], midnight_at_or_after(lo, tz)
    while start < hi:
        starts.append(start)
        start = buckets.unit_containing(start, "day", tz)[1]
    return starts


def cover(lo, hi, tz, whole_from=None):
    """(cells (lo, hi), raw ranges) of [lo, hi) (aware UTC) in zone `tz`: the
    cells starting in [cells lo, cells hi) are its whole local days from
    `whole_from` on, the raw ranges the rest; None when it holds no such day
    (at once when shorter than SHORTEST_DAY: an hourly series' buckets)."""
    if hi - lo < SHORTEST_DAY:
        return None
    try:
        inner_lo = midnight_at_or_after(max(lo, whole_from or lo), tz)
        inner_hi = buckets.unit_containing(hi, "day", tz)[0]
    except OverflowError:  # a window at the calendar's ends: no cells there
        return None
    if inner_lo >= inner_hi:
        return None
    return (inner_lo, inner_hi), tuple((a, b) for a, b in ((lo, inner_lo), (inner_hi, hi)) if a < b)


def starts_of_calls(tz, days, day_of_call, second_of_call):
    """(starts, index): the sorted starts of the local days of `tz` holding
    calls, and each call's index into them. `days` are the UTC midnights the
    calls fall on (by number), `day_of_call` each call's number there and
    `second_of_call` its whole second of that UTC day (a local midnight is a
    whole second: tzdata's offsets are)."""
    starts_per_day = []
    for day in days:  # a UTC day meets at most three local days
        starts_per_day.append(day_starts(buckets.unit_containing(day, "day", tz)[0], day + DAY, tz))
    starts = sorted({start for day_starts_ in starts_per_day for start in day_starts_})
    position = {start: i for i, start in enumerate(starts)}
    index = np.empty(len(day_of_call), dtype=np.int64)
    for number, (day, day_starts_) in enumerate(zip(days, starts_per_day)):
        calls = day_of_call == number
        offsets = np.array([(start - day) // dt.timedelta(seconds=1) for start in day_starts_], dtype=np.int64)
        which = np.searchsorted(offsets, second_of_call[calls], side="right") - 1
        index[calls] = np.array([position[start] for start in day_starts_], dtype=np.int64)[which]
    return starts, index
