"""Time buckets of the series routes: calendar units of an IANA time zone.

What a bucket is, in one place (the SQL only assigns records to the UTC
boundaries computed here):

- `hour`: a real hour that starts where the zone's clock shows hh:00. On the
  night the clock falls back, 02:00-03:00 is shown twice and gives two
  buckets (`+02:00` and `+01:00`); in `Asia/Kathmandu` (+05:45) hours start
  at hh:15 UTC.
- `day`: from local midnight to the next local midnight: 23 or 25 hours on
  DST days, exact in `+05:30` and `+05:45` zones. Where a midnight does not
  exist (a clock that springs forward at 00:00), the day starts when the
  clock does; where it occurs twice, at the first one.
- `week`: ISO weeks, from Monday 00:00 local time.
- `month`: from the 1st, 00:00 local time.

The first and the last bucket are clipped to the window [start, end), so
the buckets tile the window exactly. Buckets whose boundaries would fall
before 0001-01-01 or after 9999-12-31 (in UTC or on the zone's clock) cannot
be computed: `BeyondCalendar`.
"""
import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UNITS = ("hour", "day", "week", "month")
MAX_BUCKETS = 10_000
UTC = dt.timezone.utc
HOUR = dt.timedelta(hours=1)


class TooManyBuckets(ValueError):
    pass


class BeyondCalendar(ValueError):
    """The buckets reach past the calendar's first or last day; `bound` names
    the window's end that is too close to it: "start" or "end"."""

    def __init__(self, bound, unit, tz):
        self.bound = bound
        side, limit = ("start", "begin before 0001-01-01") if bound == "start" else ("end", "end after 9999-12-31")
        super().__init__(f"Too close to the {side} of the calendar: the {unit} buckets of {tz} "
                         f"around it would {limit}.")


def zone(name):
    """The ZoneInfo of an IANA name; ValueError naming it if there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"Unknown time zone {name!r}: use an IANA name such as "
                         "Europe/Berlin, America/St_Johns or UTC.") from None


@dataclass(frozen=True)
class Bucket:
    start: dt.datetime  # aware UTC, inclusive
    end: dt.datetime  # aware UTC, exclusive


def _midnight(day, tz):
    # fold=0: a repeated midnight means its first occurrence; a skipped one
    # resolves to the instant the clock jumps (zoneinfo's reading of a gap).
    return dt.datetime.combine(day, dt.time(0), tzinfo=tz).astimezone(UTC)


def _floor(moment, unit, tz):
    """The boundary of `unit` at or before `moment` (aware UTC)."""
    local = moment.astimezone(tz)
    if unit == "hour":
        # replace() keeps `fold`, so a repeated hour floors to its own start.
        return local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    day = local.date()
    if unit == "week":
        day -= dt.timedelta(days=day.weekday())
    elif unit == "month":
        day = day.replace(day=1)
    floor = _midnight(day, tz)
    return floor if floor <= moment else _midnight(day - dt.timedelta(days=1), tz)


def _next(boundary, unit, tz):
    """The boundary of `unit` after `boundary`."""
    if unit == "hour":
        # One real hour later, floored to the clock's hour: a 30-minute DST
        # shift (Australia/Lord_Howe) yields a short bucket, never a skipped one.
        candidate = boundary + HOUR
        local = candidate.astimezone(tz)
        if not (local.minute or local.second or local.microsecond):
            return candidate  # already on the hour: its own floor (most hours; 2x faster)
        floor = _floor(candidate, "hour", tz)
        return floor if floor > boundary else candidate
    day = boundary.astimezone(tz).date()
    if unit == "day":
        day += dt.timedelta(days=1)
    elif unit == "week":
        day += dt.timedelta(days=7)
    else:
        day = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return _midnight(day, tz)


def buckets(start, end, unit, tz):
    """The buckets tiling [start, end) (aware datetimes), clipped at both ends.

    Raises TooManyBuckets past MAX_BUCKETS, before building them all, and
    BeyondCalendar where a boundary cannot be computed (Python's dates end).
    """
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    try:
        edges = _edges(start, end, unit, tz)
    except OverflowError:
        # Years 1 and 9999 are 10,000 buckets of any unit apart: the start's
        # floor overflows only near the first, the later boundaries near the last.
        raise BeyondCalendar("start" if start.year == dt.MINYEAR else "end", unit, tz) from None
    return [Bucket(a, b) for a, b in zip(edges, edges[1:])]


def _edges(start, end, unit, tz):
    edges = [start]
    boundary = _floor(start, unit, tz)
    while True:
        boundary = _next(boundary, unit, tz)
        if boundary >= end:
            break
        if boundary > start:
            edges.append(boundary)
        if len(edges) > MAX_BUCKETS:
            raise TooManyBuckets(f"The window holds more than {MAX_BUCKETS:,} {unit} buckets: "
                                 "shorten it or use a larger bucket.")
    edges.append(end)
    return edges


def unit_containing(moment, unit, tz):
    """(start, end): the `unit` of the zone's calendar that holds `moment`, as
    aware UTC instants; the same boundaries as the buckets above (a budget's
    period is one)."""
    start = _floor(moment.astimezone(UTC), unit, tz)
    return start, _next(start, unit, tz)
