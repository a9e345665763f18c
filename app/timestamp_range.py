"""The timestamps a call may have: from CALLS_ACCEPTED_FROM to
CALLS_ACCEPTED_AHEAD seconds past the server's clock, both included.

Calls are records of the past: a timestamp ahead of the clock by more than
some skew is a client's mistake, and so is one from before the service's
history. Accepting any instant let one tenant's call dated 9999-12-31 fail
every tenant's approximate answers, and calls dated 0001-01-01 make
`rollups verify` walk 120,000 months (app/rollups.py). The record schema is
static; this range depends on the configuration and the clock, so ingestion
checks it after the schema, for `POST /v1/usage/calls` and `calls import`
alike (app/ingest.py): one comparison of two instants per record.

With RETENTION_DAYS set, the range starts no earlier than the retention
horizon of the moment (app/retention.py): a call before it would be pruned
by the next `calls prune`, and a retried batch of calls already pruned would
otherwise be stored, and counted in the rollups, a second time.
"""
import datetime as dt
from dataclasses import dataclass

from flask import current_app

from .db import ConfigurationError
from .retention import horizon_for

UTC = dt.timezone.utc
FROM_DEFAULT = "2000-01-01T00:00:00Z"
AHEAD_DEFAULT = 86400  # a day: clock skew, not scheduling
# A year ahead is no clock skew; the bound also keeps the range's end far
# from the last instant the rollups can hold (END_OF_TIME).
MAX_AHEAD = 366 * 86400


def check_settings(config):
    """CALLS_ACCEPTED_FROM and CALLS_ACCEPTED_AHEAD of `config` parsed in
    place; ConfigurationError naming the one that is not valid."""
    config["CALLS_ACCEPTED_FROM"] = _accepted_from(config["CALLS_ACCEPTED_FROM"])
    config["CALLS_ACCEPTED_AHEAD"] = _accepted_ahead(config["CALLS_ACCEPTED_AHEAD"])


def _accepted_from(value):
    """An aware datetime, or ISO 8601 text with an offset: the instant in UTC."""
    moment = value
    if not isinstance(value, dt.datetime):
        try:
            moment = dt.datetime.fromisoformat(str(value))
        except ValueError:
            moment = None
    try:
        if moment is not None and moment.utcoffset() is not None:
            return moment.astimezone(UTC)
    except OverflowError:
        pass
    raise ConfigurationError(f"CALLS_ACCEPTED_FROM must be an ISO 8601 instant with an offset, "
                             f"e.g. {FROM_DEFAULT}, not {value!r}")


def _accepted_ahead(value):
    """Seconds (a number, or its text) from 0 to MAX_AHEAD, as a timedelta."""
    if isinstance(value, dt.timedelta):
        value = value.total_seconds()
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 <= seconds <= MAX_AHEAD:
        raise ConfigurationError(f"CALLS_ACCEPTED_AHEAD must be a number of seconds from 0 to "
                                 f"{MAX_AHEAD} (366 days), not {value!r}")
    return dt.timedelta(seconds=seconds)


@dataclass(frozen=True)
class AcceptedRange:
    """[earliest, latest]: the instants a call may have at one moment."""

    earliest: dt.datetime
    latest: dt.datetime
    ahead: dt.timedelta
    earliest_by: str = "CALLS_ACCEPTED_FROM"  # the setting `earliest` comes from

    def refuses(self, moment):
        return not self.earliest <= moment <= self.latest

    def reason(self):
        """Why a timestamp is refused, naming the range and its settings."""
        return (f"Outside the accepted range: from {self.earliest.isoformat()} ({self.earliest_by}) to "
                f"{self.ahead.total_seconds():g} s past the server's clock (CALLS_ACCEPTED_AHEAD), "
                f"now {self.latest.isoformat()}.")


def accepted_range():
    """The range in force now, from the app's configuration."""
    config, now = current_app.config, dt.datetime.now(UTC)
    ahead, days = config["CALLS_ACCEPTED_AHEAD"], config.get("RETENTION_DAYS")
    earliest, earliest_by = config["CALLS_ACCEPTED_FROM"], "CALLS_ACCEPTED_FROM"
    if days is not None and horizon_for(now, days) > earliest:
        earliest, earliest_by = horizon_for(now, days), "RETENTION_DAYS"
    return AcceptedRange(earliest, now + ahead, ahead, earliest_by)
