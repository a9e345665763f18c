"""Retention: how long raw calls are kept, and which answers then need 409.

RETENTION_DAYS (unset: every call is kept) is how many whole UTC days of raw
calls `flask --app wsgi calls prune` keeps before today. The horizon rule
(`horizon_for`): the start of the UTC day RETENTION_DAYS days before now;
a call stamped exactly at the horizon is kept, one a microsecond earlier is
deleted. With RETENTION_DAYS=90, a prune at 2026-12-06T05:20Z deletes the
calls before 2026-09-07T00:00:00Z. The pruned calls are thus whole UTC days,
exactly what the day and month rollup cells hold: cells are never pruned,
so `percentiles=approximate` answers over pruned whole days keep their
totals (app/rollups.py). Ingestion refuses timestamps before the horizon of
the moment (app/timestamp_range.py): a retried batch of pruned calls cannot
be stored and counted in the cells again.

The database records what was pruned (table retention_state, read by every
worker on each answer, never kept in memory): raw calls in [pruned_from,
horizon) are gone, `pruned_from` being the earliest call a prune deleted.
The horizon only moves forward, and is recorded before any call is
deleted (app/pruning.py says why).

Which answers need pruned calls, in one place (`refuse_pruned`): an answer
reads raw calls over some ranges of time. With percentiles=exact, its whole
window (each bucket of a series). With approximate, only the edges of each
window or bucket that no whole UTC day covers (`rollups.cover`): a window
from one UTC midnight to another is cells alone, while a bucket in a zone
whose days are not UTC days (Europe/Berlin, an hour) is raw calls alone. If
any of those ranges meets [pruned_from, horizon), the answer is a 409
naming the horizon, never a partial one. A range that meets nothing pruned
is answered even before the horizon: a window before the first call ever
pruned has no call to miss. An open start reaches back to the beginning:
once anything was pruned, an exact answer of all history is a 409 and an
approximate one is not (an open start has no raw edge).

The call log (GET /v1/usage/calls, /v1/usage/all/calls, pages and
exports) lists raw calls over its whole window, so it follows the same
rule (`log_start`): a window meeting [pruned_from, horizon) is a 409 naming
the horizon, never a listing that silently lacks calls. But an open start
there means "from the horizon", not "from the beginning": a listing of the
newest calls, the log's usual use, would otherwise be refused for ever after
the first prune, and from the horizon on it misses nothing. A window that
ends at or before the horizon keeps its open start, and so the rule: 409 if
it ends after `pruned_from`.

MIN_DAYS: a budget's current period is summed from raw calls (app/budgets/):
the longest, a month of 31 days and a DST hour in any zone, must lie after
the horizon, so RETENTION_DAYS is at least 32.
"""
import datetime as dt
from dataclasses import dataclass

from .db import ConfigurationError

MIN_DAYS = 32
UTC = dt.timezone.utc


def retention_days(value):
    """RETENTION_DAYS as set (text or int): None when unset or empty, else
    a whole number of days, at least MIN_DAYS; ConfigurationError otherwise."""
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    if not text.isdigit() or int(text) < MIN_DAYS:
        raise ConfigurationError(
            f"RETENTION_DAYS must be a whole number of days, at least {MIN_DAYS} (a monthly budget's "
            f"period is summed from raw calls), or unset to keep every call; not {value!r}")
    return int(text)


def check_settings(config):
    """RETENTION_DAYS of `config` parsed in place."""
    config["RETENTION_DAYS"] = retention_days(config.get("RETENTION_DAYS"))


def horizon_for(now, days):
    """The start of the UTC day `days` days before `now` (aware): calls
    before it are pruned, calls at or after it kept."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - dt.timedelta(days=days)


@dataclass(frozen=True)
class Pruned:
    """Raw calls in [pruned_from, horizon) were deleted; nothing was when
    `pruned_from` is None (a prune that found no call before its horizon)."""

    horizon: dt.datetime | None = None
    pruned_from: dt.datetime | None = None

    def meets(self, lo, hi):
        """Does [lo, hi) (open ends None) hold an instant whose calls were pruned?"""
        if self.pruned_from is None:
            return False
        return (lo is None or lo < self.horizon) and (hi is None or hi > self.pruned_from)


# What a refused answer may ask instead: the statistics, and the call log.
STATISTICS_WAY_OUT = (
    "only their daily and monthly rollups remain. Ask with percentiles=approximate and a window (and "
    "buckets) whose ends before the horizon are UTC midnights, or with a window starting at or after "
    "the horizon.")
CALL_LOG_WAY_OUT = (
    "the call log no longer holds them (the statistics keep their daily and monthly rollups). Ask for a "
    "window starting at or after the horizon, or leave `from` out: the call log then starts at the "
    "horizon.")


class BeforeHorizon(Exception):
    """An answer needs raw calls that were pruned: 409 (app/api/errors.py)."""

    def __init__(self, pruned, lo, hi, way_out=STATISTICS_WAY_OUT):
        self.horizon = pruned.horizon
        start = pruned.pruned_from if lo is None else max(lo, pruned.pruned_from)
        end = pruned.horizon if hi is None else min(hi, pruned.horizon)
        super().__init__(
            f"Calls before {pruned.horizon.isoformat()} (the retention horizon, RETENTION_DAYS) were "
            f"pruned, and this answer needs those from {start.isoformat()} to {end.isoformat()}: {way_out}")


def refuse_pruned(pruned, ranges, way_out=STATISTICS_WAY_OUT):
    """BeforeHorizon if any of `ranges` [(lo, hi)] of raw calls an answer
    reads (open ends None) meets the pruned calls; else nothing."""
    for lo, hi in ranges:
        if pruned.meets(lo, hi):
            raise BeforeHorizon(pruned, lo, hi, way_out)


def log_start(pruned, start, end):
    """Where the call log over [start, end) (open ends None) starts reading:
    `start`, or the horizon for an open start whose window reaches past it;
    BeforeHorizon if that window meets the pruned calls (the rule above)."""
    if start is None and pruned.pruned_from is not None and (end is None or end > pruned.horizon):
        start = pruned.horizon
    refuse_pruned(pruned, [(start, end)], CALL_LOG_WAY_OUT)
    return start
