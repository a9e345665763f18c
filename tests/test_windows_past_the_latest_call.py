"""A window ending after the latest stored call reads its last day from day
cells (app/repository/rollups/read.py, `_past_the_latest`): no call lies
between its end and the next UTC midnight. The tests prove it by deleting
the raw calls of that last part-day after storing them: approximate answers
still hold them, exact ones do not; and once a call lies after the window's
end, the part-day is read from raw calls again.
"""
import datetime as dt
import uuid

from expected import expected_stats, in_window
from data import store
from test_rollups import assert_close, get, stored, window_params  # noqa: F401 (stored)
from test_rollups_in_every_zone import delete_raw_calls


def window_past_the_latest(keys, stored):
    """(a superuser key, the UTC day of the latest call, and a window from an
    odd instant 9 days before it to a second after the latest call)."""
    keys.tenant("ops", allows_superusers=True)
    latest = max(r["timestamp"] for r in stored)
    day = latest.replace(hour=0, minute=0, second=0, microsecond=0)
    return keys.key("ops", superuser=True), day, day - dt.timedelta(days=9, hours=5), latest + dt.timedelta(seconds=1)


def test_a_window_ending_after_the_latest_call_takes_its_last_day_from_cells(app, client, keys, stored):
    superuser, day, start, end = window_past_the_latest(keys, stored)
    assert delete_raw_calls(app, day, end) > 0
    for precision, records in (("approximate", stored), ("exact", [r for r in stored if not in_window(r, day, end)])):
        body = get(client, "/v1/usage/all", superuser, **window_params(start, end), percentiles=precision)
        assert_close(body["total"], expected_stats(records, None, start, end))
        tenant = get(client, "/v1/usage", keys.key("t-a"), **window_params(start, end), percentiles=precision)
        assert_close(tenant, expected_stats(records, "t-a", start, end))


def test_a_call_after_the_window_end_makes_its_last_part_day_raw_calls_again(app, client, keys, stored):
    superuser, day, start, end = window_past_the_latest(keys, stored)
    later = dict(stored[0], call_id=str(uuid.uuid4()), timestamp=end + dt.timedelta(minutes=1))
    assert later["timestamp"] < day + dt.timedelta(days=1)  # in the window's last UTC day
    store(app, [later])
    assert delete_raw_calls(app, day, end) > 0
    kept = [r for r in stored if not in_window(r, day, end)]
    body = get(client, "/v1/usage/all", superuser, **window_params(start, end), percentiles="approximate")
    assert_close(body["total"], expected_stats(kept, None, start, end))
