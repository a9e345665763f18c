"""Day cells of the zones ROLLUP_ZONES names (app/local_days.py).

A tenant's local days in Berlin (a DST change on 2026-03-29), St. John's
(-03:30, DST on 2026-03-08), Kolkata (+05:30) and Kathmandu (+05:45) get
cells of their own: the cells are checked against sums computed here from
the records, with zoneinfo; and the series by tenant in those zones keep
every call after the raw calls of their whole local days are deleted,
once `rollups rebuild` made the zones ready, and not before.
"""
import datetime as dt
import uuid
from zoneinfo import ZoneInfo

import pytest

from app import create_app
from app.db import ConfigurationError
from app.models import UsageRollup
from app.repository.rollups import zone_days
from data import UTC, record, store
from expected import expected_stats
from test_rollups import get, stored, stored_cells, window_params  # noqa: F401 (stored)
from test_rollups_in_every_zone import WINDOWS, check_series, delete_raw_calls, site  # noqa: F401 (site)

ZONES = ("Europe/Berlin", "America/St_Johns", "Asia/Kolkata", "Asia/Kathmandu")
pytestmark = pytest.mark.app_config(ROLLUP_ZONES=",".join(ZONES))


def local_midnight(moment, zone):
    """The start of the local day holding `moment` (these zones have no DST change at midnight)."""
    tz = ZoneInfo(zone)
    return dt.datetime.combine(moment.astimezone(tz).date(), dt.time(0), tzinfo=tz).astimezone(UTC)


def expected_zone_cells(records, zone):
    """{(local midnight, tenant, '', '', status, ''): (calls, cost, duration sum)}."""
    cells = {}
    for r in records:
        key = (local_midnight(r["timestamp"], zone), r["tenant_id"], "", "", r["status"], "")
        calls, cost, duration = cells.get(key, (0, 0, 0))
        cells[key] = (calls + 1, cost + int(r["cost_usd"] * 1_000_000), duration + r["call_duration_ms"])
    return cells


def whole_local_days(start, end, zone):
    """[first local midnight at or after start, last one at or before end)."""
    first = local_midnight(start, zone)
    first = first if first == start else local_midnight(first + dt.timedelta(hours=26), zone)
    return first, local_midnight(end, zone)


def test_ingestion_and_rebuild_keep_a_cell_per_tenant_status_and_local_day(app, runner, stored):
    for zone in ZONES:
        assert stored_cells(app, "day@" + zone) == expected_zone_cells(stored, zone), zone
    with app.app_context():
        assert zone_days.ready() == {}  # kept by ingestion, but not read before a rebuild built their past
    result = runner.invoke(args=["rollups", "rebuild"])
    assert result.exit_code == 0, result.output
    for zone in ZONES:
        assert stored_cells(app, "day@" + zone) == expected_zone_cells(stored, zone), zone
    with app.app_context():
        assert zone_days.ready() == {zone: None for zone in ZONES}
    result = runner.invoke(args=["rollups", "verify"])
    assert result.exit_code == 0, result.output


def test_verify_finds_a_zone_cell_that_misses_calls(app, runner, stored):
    assert runner.invoke(args=["rollups", "rebuild"]).exit_code == 0
    with app.app_context():
        first = (UsageRollup.select(UsageRollup.id).where(UsageRollup.grain == "day@Asia/Kolkata")
                 .order_by(UsageRollup.id).limit(1).scalar())
        changed = UsageRollup.update(calls=UsageRollup.calls + 1).where(UsageRollup.id == first).execute()
    assert changed == 1
    result = runner.invoke(args=["rollups", "verify"])
    assert result.exit_code == 1
    assert "day@Asia/Kolkata" in result.output


@pytest.mark.parametrize("zone", ZONES)
def test_the_series_by_tenant_reads_the_zones_cells_once_ready(app, client, runner, site, zone):
    """The raw calls of every whole local day of a window deleted: before
    the rebuild the approximate series by tenant loses them (raw rows);
    after it, it holds every call, as exact does not."""
    records, superuser = site
    start, end, unit = WINDOWS[1]
    inside = whole_local_days(start, end, zone)
    kept = [r for r in records if not inside[0] <= r["timestamp"] < inside[1]]
    assert runner.invoke(args=["rollups", "rebuild"]).exit_code == 0
    assert delete_raw_calls(app, *inside) > 0
    for group_by, filters in ((("tenant_id",), {}), (("tenant_id", "status"), {}), ((), {"tenant_id": ["t-a"]}),
                              (("status",), {"tenant_id": ["t-heavy", "t-equal"]})):
        check_series(client, superuser, records, start, end, unit, zone, group_by, filters)
        check_series(client, superuser, kept, start, end, unit, zone, group_by, filters, "exact")
    check_series(client, superuser, records, start, end, "week", zone, ("tenant_id",), {})
    check_series(client, superuser, records, start, end, "month", zone, ("tenant_id",), {})


def test_a_zone_not_ready_or_no_longer_kept_is_not_read(app, client, runner, site):
    """Cells kept since the setting named the zone, but no rebuild yet: not
    read. Ready, then a batch stored by a worker that does not name it: not
    read any more, until the next rebuild."""
    records, superuser = site
    zone = "Asia/Kolkata"
    start, end, unit = WINDOWS[1]
    inside = whole_local_days(start, end, zone)
    kept = [r for r in records if not inside[0] <= r["timestamp"] < inside[1]]
    delete_raw_calls(app, *inside)
    check_series(client, superuser, kept, start, end, unit, zone, ("tenant_id",), {})  # not ready: raw rows

    assert runner.invoke(args=["rollups", "rebuild"]).exit_code == 0  # from the calls left
    app.config["ROLLUP_ZONES"] = ("Europe/Berlin",)
    store(app, [dict(kept[0], call_id=str(uuid.uuid4()), timestamp=inside[0] + dt.timedelta(hours=30))])
    with app.app_context():
        assert zone_days.ready() == {"Europe/Berlin": None}
    app.config["ROLLUP_ZONES"] = ZONES
    delete_raw_calls(app, *inside)  # the late call too: its cells hold it, raw rows do not
    check_series(client, superuser, kept, start, end, unit, zone, ("tenant_id",), {})
    assert runner.invoke(args=["rollups", "rebuild"]).exit_code == 0
    with app.app_context():
        assert set(zone_days.ready()) == set(ZONES)


def test_erasing_a_tenant_deletes_its_zone_cells(app, runner, stored):
    result = runner.invoke(args=["tenants", "erase", "t-a", "--yes"])
    assert result.exit_code == 0, result.output
    rest = [r for r in stored if r["tenant_id"] != "t-a"]
    for zone in ZONES:
        assert stored_cells(app, "day@" + zone) == expected_zone_cells(rest, zone), zone


def test_a_rebuild_forgets_the_zones_no_longer_named(app, runner, stored):
    assert runner.invoke(args=["rollups", "rebuild"]).exit_code == 0
    app.config["ROLLUP_ZONES"] = ("Asia/Kathmandu",)
    assert runner.invoke(args=["rollups", "rebuild"]).exit_code == 0
    with app.app_context():
        assert zone_days.ready() == {"Asia/Kathmandu": None}
        grains = {grain for (grain,) in UsageRollup.select(UsageRollup.grain).distinct().tuples()}
    assert {grain for grain in grains if grain.startswith("day@")} == {"day@Asia/Kathmandu"}


@pytest.mark.parametrize("value, named", [("Mars/Olympus", "Mars/Olympus"), (",".join(["UTC"] * 2 + [
    f"Etc/GMT+{n}" for n in range(1, 9)]), "at most 8")])
def test_a_setting_that_cannot_work_stops_the_service(tmp_path, value, named):
    with pytest.raises(ConfigurationError, match="ROLLUP_ZONES") as error:
        create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "ROLLUP_ZONES": value})
    assert named in str(error.value)


def test_local_days_across_a_month_end_are_rebuilt_whole(app, runner, keys):
    """Calls just after two UTC month starts: in Kolkata and Kathmandu their
    local day began in the month before, which holds no call; in St. John's
    the local day of the last of February holds one call of March."""
    keys.tenant("t-a")
    records = [record("t-a", dt.datetime(2026, 2, 1, 0, 10, tzinfo=UTC)),
               record("t-a", dt.datetime(2026, 3, 1, 1, 0, tzinfo=UTC), status="error"),
               record("t-a", dt.datetime(2026, 2, 28, 12, 0, tzinfo=UTC))]
    store(app, records)
    with app.app_context():
        UsageRollup.delete().where(UsageRollup.grain.startswith("day@")).execute()
    assert runner.invoke(args=["rollups", "rebuild"]).exit_code == 0
    later = [record("t-a", dt.datetime(2026, 2, 1, 3, 0, tzinfo=UTC), duration=7),
             record("t-a", dt.datetime(2026, 2, 28, 23, 59, tzinfo=UTC), duration=70_000)]
    store(app, later)  # appended to the rebuilt cells as pieces: verify merges them
    for zone in ZONES:
        assert stored_cells(app, "day@" + zone) == expected_zone_cells(records + later, zone), zone
    result = runner.invoke(args=["rollups", "verify"])
    assert result.exit_code == 0, result.output


def test_all_usage_takes_the_tenants_percentiles_from_the_zones_cells(app, client, runner, site):
    """/v1/usage/all over local days of Kolkata up to its first midnight after
    the latest call: its totals by operation and model are UTC day cells and
    the tails of the first part-day (18:30 to 24:00 UTC: app/day_tails.py),
    the tenants' percentiles the zone's day cells, raw rows none. Calls as
    quick as the tenant's quickest in that part-day, their raw rows then
    deleted: the percentiles and the totals still count them."""
    records, superuser = site
    zone = "Asia/Kolkata"
    end = local_midnight(max(r["timestamp"] for r in records) + dt.timedelta(days=1), zone)
    start = end - dt.timedelta(days=20)
    part_day_end = (start + dt.timedelta(days=1)).replace(hour=0, minute=0)
    quickest = min((r for r in records
                    if r["tenant_id"] == "t-a" and r["status"] == "ok" and part_day_end <= r["timestamp"] < end),
                   key=lambda r: r["call_duration_ms"])
    quick = [dict(quickest, call_id=str(uuid.uuid4()), timestamp=start + dt.timedelta(hours=1, minutes=n))
             for n in range(60)]
    store(app, quick)
    records = records + quick
    assert runner.invoke(args=["rollups", "rebuild"]).exit_code == 0
    assert delete_raw_calls(app, start, part_day_end) >= len(quick)
    body = get(client, "/v1/usage/all", superuser, **window_params(start, end), percentiles="approximate")
    tenants = {t["tenant_id"]: t for t in body["tenants"]}
    assert set(tenants) == {r["tenant_id"] for r in records if start <= r["timestamp"] < end}
    for tenant_id, found in tenants.items():
        every_call = expected_stats(records, tenant_id, start, end)
        for name in ("total_calls", "by_operation", "by_model"):
            assert found[name] == every_call[name], (tenant_id, name)
        for metric in ("call_duration", "input_tokens", "output_tokens"):
            for stat, value in every_call[metric].items():
                if stat.startswith("p"):
                    assert abs(float(found[metric][stat]) - value) <= 0.01 * value, (tenant_id, metric, stat)
    kept = [r for r in records if not start <= r["timestamp"] < part_day_end]
    without_quick = expected_stats(kept, "t-a", start, end)["call_duration"]["p50"]
    assert float(tenants["t-a"]["call_duration"]["p50"]) < 0.5 * without_quick  # the quick calls, from cells alone
