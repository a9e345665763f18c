"""The tails of model_day cells: a named zone's local days by model from day sketches and tails (app/quarters.py).

A local day of a zone ROLLUP_ZONES names is, in model_day cells, the tail
of one UTC day from the zone's midnight on and the rest of the next: its
sketches are read as a day sketch and two tails, not as the pairs of every
quarter hour in between. The tests take the quarters' pairs away and
delete the raw calls: series by local day and week in those zones still
give every call's statistics, computed here from the records. A tail a
batch built without the zone (a worker with another setting) lacks calls:
the quarters serve instead, and `rollups verify` does not count it as a
difference, where it does count a whole tail that is wrong.
"""
import datetime as dt
import uuid
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from app import quarters
from app.db import database
from app.models import UsageRollup
from data import record, store
from test_rollups import stored  # noqa: F401 (a fixture)
from test_rollups_in_every_zone import check_series, delete_raw_calls, site  # noqa: F401 (site)
from test_zone_day_cells import ZONES, local_midnight

pytestmark = pytest.mark.app_config(ROLLUP_ZONES=",".join(ZONES))
# Local midnights across the DST changes of March (Berlin, St. John's).
FIRST_DAY, LAST_DAY = dt.datetime(2026, 2, 21, 12, tzinfo=dt.timezone.utc), dt.datetime(2026, 4, 2, 12,
                                                                                        tzinfo=dt.timezone.utc)


def local_window(zone):
    return local_midnight(FIRST_DAY, zone), local_midnight(LAST_DAY, zone)


def forget_quarter_pairs(app):
    """Empty every model_day cell's quarters' pairs: only day sketches and tails are left."""
    with app.app_context(), database.atomic():
        return (UsageRollup.update(quarter_sketches=b"")
                .where((UsageRollup.grain == "model_day") & (UsageRollup.quarter_sketches != b"")).execute())


def forget_zone_day_cells(app):
    """Delete the zones' own day cells (app/local_days.py), which a series by no more than status could read."""
    with app.app_context(), database.atomic():
        return UsageRollup.delete().where(UsageRollup.grain.startswith("day@")).execute()


@pytest.mark.parametrize("zone", ZONES)
def test_a_named_zones_local_days_come_from_day_sketches_and_tails(app, client, runner, site, zone):
    """Grouped and filtered by no more than model and status, even where the
    zone's own day cells would serve (no group, status; ready once rebuilt):
    a sketch per model and day, not one per tenant and local day."""
    records, superuser = site
    start, end = local_window(zone)
    assert runner.invoke(args=["rollups", "rebuild"]).exit_code == 0
    assert forget_quarter_pairs(app) > 0
    assert forget_zone_day_cells(app) > 0
    assert delete_raw_calls(app, start, end) > 0
    for unit in ("day", "week"):
        for group_by, filters in (((), {}), (("model",), {}), (("model", "status"), {}),
                                  (("status",), {"model": ["gpt-4o", "claude-haiku"]})):
            check_series(client, superuser, records, start, end, unit, zone, group_by, filters)


def test_a_tail_missing_calls_is_not_read(app, client, site):
    """A batch stored by a worker whose setting lacks Kathmandu: its
    model_day cells' Kathmandu tails miss its calls. Extreme durations in
    a day's tail, so that reading that tail would move the percentiles of
    both local days it splits."""
    records, superuser = site
    zone = "Asia/Kathmandu"
    start, end = local_window(zone)
    midnight = local_midnight(dt.datetime(2026, 3, 10, 12, tzinfo=dt.timezone.utc), zone)  # 18:15 UTC
    late = [dict(record("t-a", midnight + dt.timedelta(minutes=20 + i), model="gpt-4o", duration=2**31 - 1 - i,
                        input_tokens=2**30 + i), call_id=str(uuid.uuid4())) for i in range(40)]
    late += [dict(record("t-b", midnight - dt.timedelta(minutes=20 + i), model="gpt-4o", duration=1 + i),
                  call_id=str(uuid.uuid4())) for i in range(40)]
    app.config["ROLLUP_ZONES"] = ("Europe/Berlin",)
    store(app, late)
    app.config["ROLLUP_ZONES"] = ZONES
    assert delete_raw_calls(app, start, end) > 0
    for group_by in ((), ("model",)):
        check_series(client, superuser, records + late, start, end, "day", zone, group_by, {})


def tail_cells(app):
    with app.app_context():
        return list(UsageRollup.select().where((UsageRollup.grain == "model_day") & (UsageRollup.status == "ok")
                                               & (UsageRollup.tail_sketches != b"")).order_by(UsageRollup.id))


def test_verify_reads_whole_tails_only(app, runner, stored):
    assert runner.invoke(args=["rollups", "rebuild"]).exit_code == 0
    cells = tail_cells(app)
    assert cells
    for cell in cells:  # every tail of a named zone's midnight, whole
        pairs = quarters.pairs(bytes(cell.tail_sketches))
        found, numbers = quarters.records(bytes(cell.quarters))
        day = UsageRollup.cell_start.python_value(cell.cell_start)
        starts = quarters.tail_starts(day, [ZoneInfo(z) for z in ZONES])
        assert sorted(set(pairs["quarter"].tolist())) == [q for q in starts if (found >= q).any()]
        assert quarters.whole_tails(pairs, found, numbers[:, 0], starts) == set(starts)
    assert runner.invoke(args=["rollups", "verify"]).exit_code == 0

    app.config["ROLLUP_ZONES"] = ()  # a batch without any zone: its cells' tails are no longer whole
    day = UsageRollup.cell_start.python_value(cells[0].cell_start)
    store(app, [dict(record("t-a", day + dt.timedelta(hours=h, minutes=1), model=cells[0].model),
                     call_id=str(uuid.uuid4())) for h in range(24)])
    app.config["ROLLUP_ZONES"] = ZONES
    result = runner.invoke(args=["rollups", "verify"])
    assert result.exit_code == 0, result.output

    wrong = cells[1]
    pairs = quarters.pairs(bytes(wrong.tail_sketches)).copy()
    pairs["bin"][0] += 1  # a value moved to the next bin: the counts still say whole
    with app.app_context():
        UsageRollup.update(tail_sketches=pairs.tobytes()).where(UsageRollup.id == wrong.id).execute()
    result = runner.invoke(args=["rollups", "verify"])
    assert result.exit_code == 1
    assert "model_day" in result.output and "sketches differ" in result.output


def test_a_days_tails_start_at_each_named_zones_midnight_in_it():
    """Quarters of the UTC day at which a local day begins: 18:15 in
    Kathmandu, 18:30 in Kolkata, 23:00 or 22:00 in Berlin around its DST
    change, 03:30 or 02:30 in St. John's; none for UTC (its midnight is the day's)."""
    day = dt.datetime(2026, 3, 28, tzinfo=dt.timezone.utc)  # Berlin: +01:00, then +02:00 from the 29th
    zones = [ZoneInfo(z) for z in ("Asia/Kathmandu", "Asia/Kolkata", "Europe/Berlin", "UTC")]
    assert quarters.tail_starts(day, zones) == [73, 74, 92]
    assert quarters.tail_starts(day + dt.timedelta(days=1), [ZoneInfo("Europe/Berlin")]) == [88]
    assert quarters.tail_starts(dt.datetime(2026, 3, 7, tzinfo=dt.timezone.utc), [ZoneInfo("America/St_Johns")]) \
        == [14]
    assert quarters.tail_starts(dt.datetime(2026, 3, 9, tzinfo=dt.timezone.utc), [ZoneInfo("America/St_Johns")]) \
        == [10]
    assert np.array_equal(quarters.tails(np.array([3, 80]), np.array([0, 1]), np.array([5, 6]), np.array([1, 1]),
                                         [73])[0], [73])
