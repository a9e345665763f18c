"""Covers of windows beyond `rollups.cover`'s UTC days: ends past the
latest call, and the day cells of named zones (app/local_days.py)."""
import datetime as dt

from ... import local_days
from ...buckets import zone
from ...rollups import BEGINNING, Cover, ceil


def past_the_latest(windows, latest):
    """`windows` with each end after the `latest` call's timestamp (None:
    no call) moved to the next UTC midnight: no call lies between, so the
    window holds the same calls, and its last day is a day cell instead of
    raw calls. A dashboard's window ends now or at the next local midnight,
    and its last day's raw calls were the answer's largest read and grew
    with the history (a day of every tenant: 110,000 calls at 10M)."""
    if latest is None:
        return windows
    return [(start, end if end is None or end <= latest else max(end, ceil(end, "day")))  # cells end at END_OF_TIME
            for start, end in windows]


def in_zone(windows, covers, zones, stored_days, latest):
    """The covers of `windows` by the day cells of one of `zones` ({name:
    whole from}, app/local_days.py), of the one leaving the fewest seconds
    of raw edges where cells are stored (`stored_days`, the first and the
    end of the last UTC day holding day cells); `covers` (UTC's) if none
    leaves fewer. Before `stored_days` nothing is stored: no cell or raw
    range there. A window ending after the `latest` call ends, for a zone,
    at its first local midnight after that call: the same calls, whole
    local days (as `past_the_latest` does for UTC)."""
    if stored_days is None or latest is None:
        return covers
    first, last = stored_days

    def raw_seconds(found):
        return sum(max(0.0, (min(b, last) - max(a, first)).total_seconds()) for c in found for a, b in c.raw)
    best, fewest = covers, raw_seconds(covers)
    if not fewest:  # UTC's cells leave no raw row (a series by UTC days)
        return covers
    after_latest = latest + dt.timedelta(microseconds=1)
    for name, whole_from in zones.items():
        tz, grain, zone_covers = zone(name), local_days.grain_of(name), []
        end_after_latest = local_days.midnight_at_or_after(after_latest, tz)
        for start, end in windows:
            lo = max(start or BEGINNING, first)
            hi = end_after_latest if end is None or end > latest else end
            found = local_days.cover(lo, hi, tz, whole_from) if lo < hi else None
            if found is None:  # no whole local day: raw rows, if anything is stored there
                zone_covers.append(Cover((), ((lo, hi),) if lo < hi else ()))
            else:
                (cells_lo, cells_hi), raw = found
                zone_covers.append(Cover(((grain, cells_lo, cells_hi),), raw))
        seconds = raw_seconds(zone_covers)
        if seconds < fewest:
            best, fewest = zone_covers, seconds
    return best
