"""Sealed months: the current month has day cells only; a month's month
cells are built from its day cells once it has ended (app/rollups.py).

Expected cells and statistics are computed here from the records stored
(test_rollups.expected_cells, expected.expected_stats), never by the service.
"""
import datetime as dt
import threading

from app.db import database
from app.models import UsageRollup, UsageRollupState, utcnow
from app.repository import rollups
from app.rollups import following
from data import UTC, random_records, seeded, store
from expected import expected_stats, group_stats
from test_rollups import assert_close, expected_cells, get, stored_cells, window_params

NOW = utcnow().replace(microsecond=0)
MONTH = NOW.replace(day=1, hour=0, minute=0, second=0)  # the current UTC month
NEXT_MONTH = following(MONTH, "month")
TENANTS = ["t-a", "t-b"]


def cells_of(records, grain, lo=None, hi=None):
    return {key: value for key, value in expected_cells(records, grain).items()
            if (lo is None or key[0] >= lo) and (hi is None or key[0] < hi)}


def sealed_before(app):
    with app.app_context():
        return UsageRollupState.select(UsageRollupState.sealed_before).scalar()


def approximate_matches_exact(app, client, keys, records, windows):
    keys.tenant("ops", allows_superusers=True)
    superuser = keys.key("ops", superuser=True)
    for start, end in windows:
        body = get(client, "/v1/usage/all", superuser, percentiles="approximate", **window_params(start, end))
        for stats in body["tenants"]:
            assert_close(stats, expected_stats(records, stats["tenant_id"], start, end))
        assert_close(body["total"], expected_stats(records, None, start, end))


def with_tenants(keys):
    for tenant_id in TENANTS:
        keys.tenant(tenant_id)


def test_the_current_month_has_day_cells_only_and_ended_months_their_month_cells(app, client, keys):
    with_tenants(keys)
    records = random_records(seeded(71), TENANTS, 400, MONTH - dt.timedelta(days=45), NOW)
    store(app, records[:200])  # the first batch seals, the second knows the current month is open
    store(app, records[200:])
    assert sealed_before(app) == MONTH
    assert stored_cells(app, "month") == cells_of(records, "month", hi=MONTH)
    assert stored_cells(app, "day") == cells_of(records, "day")
    assert stored_cells(app, "tenant_day") == cells_of(records, "tenant_day")
    assert stored_cells(app, "tenant_month") == cells_of(records, "tenant_month", hi=MONTH)
    approximate_matches_exact(app, client, keys, records, [
        (None, None), (MONTH, None), (MONTH - dt.timedelta(days=40), NOW), (NOW - dt.timedelta(days=30), None),
        (following(MONTH - dt.timedelta(days=1), "month") - dt.timedelta(days=31), MONTH)])


def test_sealing_an_ended_month_builds_its_month_cells_from_its_days(app, client, keys):
    with_tenants(keys)
    records = random_records(seeded(72), TENANTS, 300, MONTH, NOW)
    store(app, records)
    assert stored_cells(app, "month") == {}
    with app.app_context():
        assert rollups.seal(now=NEXT_MONTH) == len(cells_of(records, "month")) + len(cells_of(records, "tenant_month"))
    assert sealed_before(app) == NEXT_MONTH
    assert stored_cells(app, "month") == cells_of(records, "month")
    assert stored_cells(app, "tenant_month") == cells_of(records, "tenant_month")
    with app.app_context():
        assert rollups.differences(MONTH) == []
        assert rollups.seal(now=NEXT_MONTH) == 0  # nothing left to seal
    late = random_records(seeded(73), TENANTS, 50, MONTH, NOW)  # into the sealed month: month cells too
    store(app, late)
    assert stored_cells(app, "month") == cells_of(records + late, "month")
    assert stored_cells(app, "tenant_month") == cells_of(records + late, "tenant_month")
    with app.app_context():
        assert rollups.differences(MONTH) == []
    approximate_matches_exact(app, client, keys, records + late, [(None, None), (MONTH, NEXT_MONTH), (MONTH, None)])


def test_a_database_from_before_sealing_is_sealed_by_its_next_batch(app, client, keys, runner):
    """NULL sealed_before (migration 015 on an older database): every month
    has month cells; the next batch seals, deleting the current month's."""
    with_tenants(keys)
    records = random_records(seeded(74), TENANTS, 300, MONTH - dt.timedelta(days=40), NOW)
    store(app, records)
    with app.app_context():  # as before migration 015: month cells of every month, the current one too
        UsageRollupState.update(sealed_before=None).execute()
        for month in rollups.months_to_rebuild():
            rollups.rebuild_month(month)
    assert stored_cells(app, "month") == cells_of(records, "month")
    more = random_records(seeded(75), TENANTS, 20, MONTH, NOW)
    store(app, more)  # its batch sees NULL, adds to every month's cells, then seals
    assert sealed_before(app) == MONTH
    assert stored_cells(app, "month") == cells_of(records + more, "month", hi=MONTH)
    assert stored_cells(app, "tenant_month") == cells_of(records + more, "tenant_month", hi=MONTH)
    result = runner.invoke(args=["rollups", "verify"])
    assert result.exit_code == 0, result.output
    approximate_matches_exact(app, client, keys, records + more, [(None, None), (MONTH, None)])


def test_sealing_while_batches_are_stored_loses_no_call(app, keys):
    """Batches into the month being sealed, before, during and after the
    seal: its month cells hold every call exactly once (the seal waits for
    batches in flight; later batches write month cells themselves)."""
    with_tenants(keys)
    records = random_records(seeded(76), TENANTS, 600, MONTH, NOW)
    batches = [records[i:i + 25] for i in range(0, len(records), 25)]
    with app.app_context():
        UsageRollupState.update(sealed_before=MONTH).execute()
    errors, start = [], threading.Barrier(5)

    def store_batches(mine):
        try:
            start.wait()
            for batch in mine:
                store(app, batch)
        except Exception as error:  # reported below
            errors.append(error)
        finally:
            database.close()

    def seal():
        try:
            start.wait()
            with app.app_context():
                rollups.seal(now=NEXT_MONTH)
        except Exception as error:
            errors.append(error)
        finally:
            database.close()

    threads = [threading.Thread(target=store_batches, args=(batches[i::4],)) for i in range(4)]
    threads.append(threading.Thread(target=seal))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sealed_before(app) == NEXT_MONTH
    assert stored_cells(app, "month") == cells_of(records, "month")
    with app.app_context():
        assert rollups.differences(MONTH) == []
        assert UsageRollup.select().where(UsageRollup.grain == "month").count() == len(cells_of(records, "month"))


def test_monthly_series_over_the_month_not_sealed(app, client, keys):
    """The current month as a whole bucket: totals from its day cells,
    percentiles from its tenant_month cells (by tenant) or day cells (by model)."""
    with_tenants(keys)
    keys.tenant("ops", allows_superusers=True)
    superuser = keys.key("ops", superuser=True)
    records = random_records(seeded(77), TENANTS, 300, MONTH - dt.timedelta(days=40), NOW)
    store(app, records[:100])
    store(app, records[100:])
    start = (MONTH - dt.timedelta(days=1)).replace(day=1)  # the month before: sealed
    for group_by in ("tenant_id", "model"):
        body = get(client, "/v1/usage/all/series", superuser, **window_params(start, NEXT_MONTH), bucket="month",
                   tz="UTC", group_by=group_by, percentiles="approximate")
        assert [utc_start(b) for b in body["buckets"]][-1] == MONTH
        for bucket in body["buckets"]:
            chosen = [r for r in records if utc_start(bucket) <= r["timestamp"] < utc_end(bucket)]
            assert [g[group_by] for g in bucket["groups"]] == sorted({r[group_by] for r in chosen})
            for group in bucket["groups"]:
                assert_close(group, group_stats([r for r in chosen if r[group_by] == group[group_by]]))


def utc_start(bucket):
    return dt.datetime.fromisoformat(bucket["start"]).astimezone(UTC)


def utc_end(bucket):
    return dt.datetime.fromisoformat(bucket["end"]).astimezone(UTC)
