"""The tails of day cells: a window's first part-day from cells (app/day_tails.py).

Day cells of ok calls and failed_day cells keep the numbers of their UTC
day from each named zone's local midnight on, checked here against sums
computed from the records with zoneinfo. Once `rollups rebuild` made the
zones ready, an answer keyed by operation or model over a window starting
at such a midnight takes its first part-day from them: the raw calls of
those part-days deleted, approximate answers still hold every call, exact
ones do not; before the rebuild they read the raw calls.
"""
import datetime as dt
import struct

import pytest

from app.db import database
from app.migrate import upgrade
from app.models import UsageRollup
from app.repository.rollups import zone_days
from app.repository.rollups.keep import COMPACT_AFTER
from conftest import roll_back_through
from data import UTC, record, store
from expected import expected_stats
from test_rollups import get, stored, window_params  # noqa: F401 (stored)
from test_rollups_in_every_zone import delete_raw_calls, site  # noqa: F401 (site)
from test_zone_day_cells import ZONES, local_midnight

pytestmark = pytest.mark.app_config(ROLLUP_ZONES=",".join(ZONES))
RECORD = struct.Struct("<BIq3q3I3I")  # quarter, calls, cost, then per metric sum, minimum, maximum
METRICS = ("call_duration_ms", "input_tokens", "output_tokens")
DAY = dt.timedelta(days=1)
TOTALS = ("total_calls", "failed_calls", "total_cost_usd", "by_operation", "by_model")


def utc_day(moment):
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def tail_quarters(moment, zones=ZONES):
    """The quarters of `moment`'s UTC day at which a tail holding it starts:
    the local midnight of its local day, where that lies inside the UTC day."""
    found = set()
    for zone in zones:
        midnight = local_midnight(moment, zone)
        if midnight > utc_day(moment):
            found.add((midnight - utc_day(moment)) // dt.timedelta(minutes=15))
    return found


def add(numbers, r):
    calls, cost, sums, mins, maxs = numbers or (0, 0, (0, 0, 0), (None,) * 3, (None,) * 3)
    values = [r[m] for m in METRICS]
    return (calls + 1, cost + int(r["cost_usd"] * 1_000_000), tuple(s + v for s, v in zip(sums, values)),
            tuple(v if m is None else min(m, v) for m, v in zip(mins, values)),
            tuple(v if m is None else max(m, v) for m, v in zip(maxs, values)))


def expected_tails(records, zones=ZONES):
    """{(grain, UTC day, tenant, operation, model, status, ''): {quarter: numbers}} of
    the day cells of ok calls and the failed_day cells, for every tail holding a call."""
    found = {}
    for r in records:
        grain = "day" if r["status"] == "ok" else "failed_day"
        key = (grain, utc_day(r["timestamp"]), r["tenant_id"], r["operation"], r["model"], r["status"], "")
        for quarter in tail_quarters(r["timestamp"], zones):
            tails = found.setdefault(key, {})
            tails[quarter] = add(tails.get(quarter), r)
    return found


def decoded(blob, day):
    """{quarter: numbers} of the tails a tail_numbers value gives on UTC `day`:
    for each named zone's midnight inside it, the records (one per segment,
    appended pieces included) from that quarter on, added up."""
    tails = {}
    starts = {(midnight - day) // dt.timedelta(minutes=15) for midnight in
              (local_midnight(day + DAY - dt.timedelta(seconds=1), zone) for zone in ZONES) if midnight > day}
    for quarter, calls, cost, *rest in RECORD.iter_unpack(bytes(blob)):
        for start in starts:
            if quarter >= start:
                c, k, s, lo, hi = tails.get(start, (0, 0, (0, 0, 0), rest[3:6], rest[6:]))
                tails[start] = (c + calls, k + cost, tuple(a + b for a, b in zip(s, rest[:3])),
                                tuple(map(min, lo, rest[3:6])), tuple(map(max, hi, rest[6:])))
    return tails


def stored_tails(app):
    """{key: {quarter: numbers}} of every cell holding tails, and the grains of cells holding any."""
    with app.app_context():
        rows = list(UsageRollup
                    .select(UsageRollup.grain, UsageRollup.cell_start, UsageRollup.tenant_id, UsageRollup.operation,
                            UsageRollup.model, UsageRollup.status, UsageRollup.error_class, UsageRollup.tail_numbers)
                    .tuples())
    tails = {tuple(row[:7]): decoded(row[7], row[1]) for row in rows if bytes(row[7])}
    return tails, {key[0] for key in tails}


def test_ingestion_and_rebuild_keep_the_tails_of_the_named_zones_days(app, runner, stored):
    expected = expected_tails(stored)
    # Kolkata's 18:30, Kathmandu's 18:15, St. John's 03:30 UTC (in winter)
    assert len(expected) > 50 and {q for tails in expected.values() for q in tails} >= {74, 73, 14}
    assert stored_tails(app) == (expected, {"day", "failed_day"})
    result = runner.invoke(args=["rollups", "rebuild"])
    assert result.exit_code == 0, result.output
    assert stored_tails(app) == (expected, {"day", "failed_day"})
    result = runner.invoke(args=["rollups", "verify"])
    assert result.exit_code == 0, result.output


def test_a_cell_written_by_many_batches_adds_its_tails_up(app, runner, keys):
    """One call a batch in one day cell, before and after Kolkata's and
    Kathmandu's midnights (18:30, 18:15 UTC) and Berlin's (22:00): each
    batch appends its record, the COMPACT_AFTER-th adds them up per segment."""
    keys.tenant("t-a")
    day = dt.datetime(2026, 5, 3, tzinfo=UTC)
    moments = [day + dt.timedelta(hours=18, minutes=10 + 7 * i) for i in range(2 * COMPACT_AFTER + 3)]
    moments[-1] = day + dt.timedelta(hours=23, minutes=30)
    records = []
    for i, moment in enumerate(moments):
        records.append(record("t-a", moment, duration=(i * 37) % 97, cost="0.000007"))
        store(app, records[-1:])
        tails, _ = stored_tails(app)
        assert tails == expected_tails(records)
    with app.app_context():
        blob, pieces = (UsageRollup.select(UsageRollup.tail_numbers, UsageRollup.sketch_pieces)
                        .where(UsageRollup.grain == "day").tuples().get())
    quarters = [quarter for quarter, *_ in RECORD.iter_unpack(bytes(blob))]
    # Each call is in one segment (St. John's from 02:30 UTC holds them all), each batch since the last
    # merge appended its record: before them, the merged records, one per segment, in order.
    merged = quarters[:len(quarters) - (pieces - 1)]
    assert 1 < pieces < COMPACT_AFTER and merged == sorted(set(merged)) and len(merged) > 1
    result = runner.invoke(args=["rollups", "verify"])
    assert result.exit_code == 0, result.output


def check_all_usage(client, superuser, records, start, end, precision="approximate"):
    """/v1/usage/all over [start, end) gives each tenant's numbers of `records`."""
    body = get(client, "/v1/usage/all", superuser, **window_params(start, end), percentiles=precision)
    assert body["percentiles"] == precision
    tenants = {t["tenant_id"]: t for t in body["tenants"]}
    assert set(tenants) == {r["tenant_id"] for r in records if start <= r["timestamp"] < end}
    for tenant_id, found in tenants.items():
        expected = expected_stats(records, tenant_id, start, end)
        for name in TOTALS:
            assert found[name] == expected[name], (tenant_id, name)
    expected = expected_stats(records, None, start, end)
    assert [body["total"][name] for name in TOTALS] == [expected[name] for name in TOTALS]
    assert [body["total"][metric][stat] for metric in ("call_duration", "output_tokens") for stat in ("min", "max")] \
        == [expected[metric][stat] for metric in ("call_duration", "output_tokens") for stat in ("min", "max")]


def first_part_day(site_records, app, zone):
    """(start, end, every record, records without the first part-day): a
    window from a local midnight of `zone` in March, with a failed call
    stored at that midnight exactly and the window's slowest call at the
    part-day's last second."""
    start, end = local_midnight(dt.datetime(2026, 3, 5, 12, tzinfo=UTC), zone), dt.datetime(2026, 3, 30, 5, 7,
                                                                                               tzinfo=UTC)
    part_day = (start, utc_day(start) + DAY)
    added = [record("t-a", start, operation="summarize", status="error", error_class="APITimeoutError"),
             record("t-equal", part_day[1] - dt.timedelta(seconds=1), duration=2**31 - 1, cost="0.000001")]
    store(app, added)
    records = site_records + added
    return start, end, records, [r for r in records if not part_day[0] <= r["timestamp"] < part_day[1]]


@pytest.mark.parametrize("zone", ZONES)
def test_all_usage_takes_its_first_part_day_from_tails(app, client, runner, site, keys, zone):
    """Ready zones: the raw calls of the first part-day deleted, approximate
    totals (of every tenant, the grand total, and of one tenant by
    /v1/usage) still hold them, exact ones do not."""
    site_records, superuser = site
    start, end, records, kept = first_part_day(site_records, app, zone)
    assert runner.invoke(args=["rollups", "rebuild"]).exit_code == 0
    assert delete_raw_calls(app, start, utc_day(start) + DAY) >= 2
    check_all_usage(client, superuser, records, start, end)
    check_all_usage(client, superuser, kept, start, end, "exact")
    for tenant_id in ("t-a", "t-equal"):  # one has the failed call at midnight, the other the slowest
        body = get(client, "/v1/usage", keys.key(tenant_id), **window_params(start, end), percentiles="approximate")
        expected = expected_stats(records, tenant_id, start, end)
        for name in TOTALS:
            assert body[name] == expected[name], (tenant_id, name)
        assert body["call_duration"]["max"] == expected["call_duration"]["max"]


def test_migration_020_takes_the_zones_out_of_the_ready_ones(app, client, runner, site):
    """Cells stored before 020 hold no tails: after it no zone is ready, and
    the first part-day is raw calls (deleted here: the totals lose them) until
    a rebuild computes the tails."""
    site_records, superuser = site
    zone = "Asia/Kathmandu"
    start, end, records, kept = first_part_day(site_records, app, zone)
    assert runner.invoke(args=["rollups", "rebuild"]).exit_code == 0
    with app.app_context():
        roll_back_through(database.obj, "020_day_tails")
        upgrade(database.obj)
        assert zone_days.ready() == {}
    assert stored_tails(app)[0] == {}  # as the cells stored before 020
    delete_raw_calls(app, start, utc_day(start) + DAY)
    check_all_usage(client, superuser, kept, start, end)
    assert runner.invoke(args=["rollups", "rebuild"]).exit_code == 0
    assert stored_tails(app)[0] == expected_tails(kept)


def test_verify_finds_a_tail_that_misses_a_call(app, runner, stored):
    assert runner.invoke(args=["rollups", "rebuild"]).exit_code == 0
    with app.app_context():
        cell_id, blob = (UsageRollup.select(UsageRollup.id, UsageRollup.tail_numbers)
                         .where((UsageRollup.grain == "day") & (UsageRollup.tail_numbers != b""))
                         .order_by(UsageRollup.id).limit(1).tuples().get())
        quarter, calls, *rest = RECORD.unpack(bytes(blob)[:RECORD.size])
        changed = bytes(blob)[RECORD.size:] + RECORD.pack(quarter, calls - 1, *rest)
        UsageRollup.update(tail_numbers=changed).where(UsageRollup.id == cell_id).execute()
    result = runner.invoke(args=["rollups", "verify"])
    assert result.exit_code == 1
    assert "sketches differ" in result.output
