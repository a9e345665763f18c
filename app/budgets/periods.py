"""A budget's periods: days, ISO weeks (from Monday) or months of its time zone."""
import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from .. import buckets

PERIODS = ("day", "week", "month")


@dataclass(frozen=True)
class Period:
    start: dt.datetime  # aware UTC, inclusive: local midnight
    end: dt.datetime  # aware UTC, exclusive: the next period's start
    zone: ZoneInfo

    def local(self, moment):
        """`moment` in RFC 3339 with the zone's offset at that moment."""
        return moment.astimezone(self.zone).isoformat()

    def elapsed_share(self, now):
        """How much of the period has passed at `now`, from 0 to 1."""
        passed = min(max(now - self.start, dt.timedelta(0)), self.end - self.start)
        return passed / (self.end - self.start)


def containing(moment, period, tz):
    """The Period of kind `period` ('day', 'week' or 'month') of zone `tz`
    (a name) that holds `moment`."""
    zone = ZoneInfo(tz)
    return Period(*buckets.unit_containing(moment, period, zone), zone)
