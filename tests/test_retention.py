"""Retention: `calls prune`, the 409s of answers needing pruned calls, and
rollups that keep answering over pruned whole days.

Expected numbers are computed here from the records the test stored
(tests/expected.py), never by the service; horizons are computed here from
the rule (the start of the UTC day RETENTION_DAYS days before now).
"""
import datetime as dt
import json
import threading
from decimal import Decimal

import pytest

from app import chunks, create_app, pruning
from app.db import ConfigurationError, database
from app.models import LlmCall, RetentionState, UsageRollup
from app.repository import retention as retained
from app.retention import MIN_DAYS, Pruned, horizon_for
from conftest import auth, roll_back_through, sqlite_write_lock
from data import UTC, jsonl, random_records, record, seeded, store, to_json
from expected import assert_stats_equal, expected_stats, group_stats, in_window
from test_rollups import assert_cells_match, assert_close, window_params
from test_series import utc

DAYS = 40
# A prune "run" at NOW (service level, the clock fixed) with RETENTION_DAYS=40:
NOW = dt.datetime(2026, 5, 10, 13, 7, tzinfo=UTC)
HORIZON = dt.datetime(2026, 3, 31, tzinfo=UTC)  # 2026-05-10 less 40 days, at 00:00 UTC
START, END = dt.datetime(2026, 1, 20, 7, 13, 5, tzinfo=UTC), dt.datetime(2026, 4, 20, 16, 41, 59, tzinfo=UTC)
US = dt.timedelta(microseconds=1)
TENANTS = ["t-a", "t-b", "t-c"]

pytestmark = pytest.mark.app_config(RETENTION_DAYS=str(DAYS))


def day(month, day_of_month, hour=0):
    return dt.datetime(2026, month, day_of_month, hour, tzinfo=UTC)


@pytest.fixture
def site(app, keys):
    """Three tenants' calls from START to END, two of them exactly at the
    horizon and a microsecond before it; an admin key, tenant keys."""
    for tenant_id in TENANTS:
        keys.tenant(tenant_id)
    keys.tenant("ops", allows_superusers=True)
    records = random_records(seeded(31), TENANTS, 600, START, END)
    records += [record("t-a", HORIZON, duration=777), record("t-a", HORIZON - US, duration=555)]
    store(app, records)
    return {"records": records, "admin": keys.key("ops", superuser=True),
            "t-a": keys.key("t-a"), "app": app}


def prune_at(app, now=NOW, size=None, progress=None):
    with app.app_context():
        plan = pruning.plan(DAYS, now)
        return plan, pruning.prune(plan, size, progress)


def get(client, path, key, status=200, **params):
    response = client.get(path, headers=auth(key), query_string=params)
    assert response.status_code == status, response.data
    return json.loads(response.data, parse_float=Decimal)


def assert_refused(client, path, key, **params):
    """409 in the error shape, naming the horizon and the way out."""
    body = get(client, path, key, status=409, **params)
    assert body["code"] == 409 and body["status"] == "Conflict" and body["request_id"]
    assert f"Calls before {HORIZON.isoformat()} (the retention horizon" in body["message"]
    assert "percentiles=approximate" in body["message"]


def stored_timestamps(app):
    with app.app_context():
        return sorted(LlmCall.timestamp.python_value(t) for (t,) in LlmCall.select(LlmCall.timestamp).tuples())


def test_the_horizon_is_the_start_of_the_utc_day_retention_days_before_now():
    assert horizon_for(NOW, DAYS) == HORIZON
    assert horizon_for(dt.datetime(2026, 5, 10, tzinfo=UTC), DAYS) == HORIZON
    assert horizon_for(dt.datetime(2026, 5, 10, 23, 59, 59, 999999, tzinfo=UTC), DAYS) == HORIZON
    berlin = dt.timezone(dt.timedelta(hours=2))  # 01:30 in Berlin is still May 9th in UTC
    assert horizon_for(dt.datetime(2026, 5, 10, 1, 30, tzinfo=berlin), DAYS) == HORIZON - dt.timedelta(days=1)


@pytest.mark.parametrize("value", ["0", "31", "-40", "40.5", "forty"])
def test_retention_days_is_a_whole_number_of_at_least_32_days(tmp_path, value):
    with pytest.raises(ConfigurationError, match="RETENTION_DAYS must be a whole number of days, at least 32"):
        create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/usage.db", "RETENTION_DAYS": value})
    assert MIN_DAYS == 32
    for unset in (None, ""):
        app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/usage.db", "RETENTION_DAYS": unset})
        assert app.config["RETENTION_DAYS"] is None


def test_prune_keeps_a_call_at_the_horizon_and_deletes_one_a_microsecond_before(site):
    app, records = site["app"], site["records"]
    plan, deleted = prune_at(app)
    kept = sorted(r["timestamp"] for r in records if r["timestamp"] >= HORIZON)
    assert deleted == plan.calls == len(records) - len(kept)
    assert stored_timestamps(app) == kept and kept[0] == HORIZON
    first = min(r["timestamp"] for r in records)
    assert plan.pruned == Pruned(HORIZON, first)
    with app.app_context():  # recorded for every worker, and never moved back
        assert (RetentionState.get().horizon, RetentionState.get().pruned_from) == (HORIZON, first)
        assert pruning.plan(DAYS, NOW - dt.timedelta(days=9)).pruned == Pruned(HORIZON, first)


def test_approximate_answers_over_pruned_whole_days_keep_their_totals(site, client):
    app, records, admin = site["app"], site["records"], site["admin"]
    before = get(client, "/v1/usage/all", admin, percentiles="approximate")
    cells_before = {grain: _cells(app, grain) for grain in ("day", "month", "tenant_month", "tenant_day")}
    prune_at(app)
    assert get(client, "/v1/usage/all", admin, percentiles="approximate") == before
    assert {grain: _cells(app, grain) for grain in ("day", "month", "tenant_month", "tenant_day")} == cells_before
    windows = [(day(2, 3), day(3, 15)), (None, HORIZON), (day(1, 1), day(4, 5, 7)),
               (day(3, 20), None), (HORIZON, day(4, 12, 9))]
    for start, end in windows:
        params = {**window_params(start, end), "percentiles": "approximate"}
        assert_close(get(client, "/v1/usage", site["t-a"], **params), expected_stats(records, "t-a", start, end))
        body = get(client, "/v1/usage/all", admin, **params)
        assert_close(body["total"], expected_stats(records, None, start, end))
    body = get(client, "/v1/usage/all/series", admin, percentiles="approximate", bucket="day", tz="UTC",
               group_by="tenant_id", **window_params(day(2, 1), day(4, 5)))
    assert len(body["buckets"]) == 63
    for bucket in body["buckets"]:
        chosen = [r for r in records if in_window(r, utc(bucket["start"]), utc(bucket["end"]))]
        assert [g["tenant_id"] for g in bucket["groups"]] == sorted({r["tenant_id"] for r in chosen})
        for group in bucket["groups"]:
            assert_close(group, group_stats([r for r in chosen if r["tenant_id"] == group["tenant_id"]]))


def _cells(app, grain):
    with app.app_context():
        return sorted(UsageRollup.select(UsageRollup.tenant_id, UsageRollup.cell_start, UsageRollup.operation,
                                         UsageRollup.model, UsageRollup.status, UsageRollup.calls,
                                         UsageRollup.cost_micro_usd).where(UsageRollup.grain == grain).tuples())


def test_answers_needing_pruned_calls_are_409_naming_the_horizon(site, client):
    app, records, admin, tenant = site["app"], site["records"], site["admin"], site["t-a"]
    prune_at(app)
    first = min(r["timestamp"] for r in records)
    exact = [(None, None), (day(3, 30), day(4, 2)), (HORIZON - US, None), (first, first + US), (None, day(2, 1))]
    for start, end in exact:
        for path, key in (("/v1/usage", tenant), ("/v1/usage/all", admin)):
            assert_refused(client, path, key, **window_params(start, end))
        if start and end:  # a series without them is the last 30 days
            assert_refused(client, "/v1/usage/all/series", admin, **window_params(start, end))
    assert_refused(client, "/v1/usage/series", tenant, **window_params(day(3, 1), day(4, 1)), bucket="week")
    # approximate: an edge that no whole UTC day covers lies in pruned days
    for start, end in ((day(2, 3, 5), day(3, 15)), (day(2, 3), day(3, 15, 1)), (day(3, 30, 12), None),
                       (None, HORIZON - US)):
        assert_refused(client, "/v1/usage/all", admin, percentiles="approximate", **window_params(start, end))
    for bucket, tz in (("day", "Europe/Berlin"), ("hour", "UTC"), ("day", "Asia/Kolkata")):
        assert_refused(client, "/v1/usage/all/series", admin, percentiles="approximate", bucket=bucket, tz=tz,
                       **window_params(day(3, 2), day(3, 5)))
    # as CSV too: the error is JSON
    response = client.get("/v1/usage/all", headers={**auth(admin), "Accept": "text/csv"})
    assert response.status_code == 409 and response.is_json
    # nothing pruned in the window: answered, exactly
    for start, end in ((HORIZON, None), (HORIZON, day(4, 12, 9)), (day(1, 1), first)):
        assert_stats_equal(get(client, "/v1/usage", tenant, **window_params(start, end)),
                           expected_stats(records, "t-a", start, end))
        assert_stats_equal(get(client, "/v1/usage/all", admin, **window_params(start, end))["total"],
                           expected_stats(records, None, start, end))
    assert get(client, "/v1/usage/all", admin, **window_params(day(1, 1), first))["total"]["total_calls"] == 0


def test_an_interrupted_prune_is_refused_meanwhile_and_a_rerun_finishes_it(site, client):
    app, records, admin = site["app"], site["records"], site["admin"]
    chunk_sizes = []

    def crash_after_the_first_chunk(deleted):
        chunk_sizes.append(deleted)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prune_at(app, size=chunks.ChunkSize(50, adapt=False), progress=crash_after_the_first_chunk)
    before = sum(r["timestamp"] < HORIZON for r in records)
    assert chunk_sizes == [50] and len(stored_timestamps(app)) == len(records) - 50
    assert_refused(client, "/v1/usage/all", admin, **window_params(day(3, 1), None))  # the horizon came first
    plan, deleted = prune_at(app)
    assert (plan.calls, deleted) == (before - 50, before - 50)
    assert stored_timestamps(app) == sorted(r["timestamp"] for r in records if r["timestamp"] >= HORIZON)


def test_prune_deletes_in_chunks_and_leaves_the_write_lock_free_between_them(site, database_url, tmp_path):
    """SQLite: between two chunks another connection takes the write lock at
    once (a busy timeout of 0). Each chunk is one DELETE of at most its size."""
    app, records = site["app"], site["records"]
    before = sum(r["timestamp"] < HORIZON for r in records)
    sizes = []
    prune_at(app, size=chunks.ChunkSize(70, adapt=False),
             progress=lock_free_after_each(sizes, database_url, tmp_path))
    assert sizes == [70] * (before // 70) + [before % 70]


def lock_free_after_each(sizes, database_url, folder):
    """A `progress` of chunks.delete_all: appends each chunk's rows to `sizes`,
    and on SQLite takes the write lock at once (busy timeout 0: "database is
    locked" if the chunk still held it), then lets it go."""
    def between_chunks(deleted):
        sizes.append(deleted)
        if database_url.startswith("sqlite"):
            with sqlite_write_lock(f"{folder}/usage.db"):
                pass
    return between_chunks


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_on_postgresql_a_batch_commits_while_a_chunk_is_deleting(site, keys):
    """A chunk's DELETE locks only the rows it deletes: a batch of new calls,
    on another connection, commits while the chunk's transaction is open."""
    app = site["app"]
    with app.app_context():
        deleter = retained.calls_before_deleter(HORIZON)
        pruning.plan(DAYS, NOW)
        with database.atomic():
            assert deleter.chunk(100) == 100  # its transaction (a savepoint in this one) still open
            done = threading.Event()

            def ingest():
                store(app, [record("t-b", day(4, 30, 12))])
                done.set()

            thread = threading.Thread(target=ingest)
            thread.start()
            thread.join(timeout=20)
            assert done.is_set()


def test_chunk_size_adapts_to_about_a_fifth_of_a_second():
    size = chunks.ChunkSize(1000)
    size.took(1000, 0.05)  # fast: grows, at most twofold
    assert size.rows == 2000
    size.took(2000, 1.0)  # slow: shrinks at once to what takes 0.2 s
    assert size.rows == 400
    size.took(300, 5.0)  # a last, short chunk says nothing
    assert size.rows == 400
    size.took(400, 100.0)
    assert size.rows == chunks.FEWEST_ROWS
    fixed = chunks.ChunkSize(7, adapt=False)
    fixed.took(7, 10.0)
    assert fixed.rows == 7


def test_calls_prune_uses_retention_days_and_rollups_verify_checks_the_retained_range(app, runner, keys):
    keys.tenant("t-a")
    horizon = horizon_for(dt.datetime.now(UTC), DAYS)
    records = random_records(seeded(32), ["t-a"], 200, horizon - dt.timedelta(days=70),
                             horizon + dt.timedelta(days=35))
    records += [record("t-a", horizon), record("t-a", horizon - US)]
    store(app, records)
    result = runner.invoke(args=["calls", "prune"])
    assert result.exit_code == 0, result.output
    pruned = sum(r["timestamp"] < horizon for r in records)
    assert (f"Pruned {pruned} call(s) before {horizon.isoformat()} (RETENTION_DAYS={DAYS}); "
            "their rollup cells are kept.") in result.output
    assert stored_timestamps(app) == sorted(r["timestamp"] for r in records if r["timestamp"] >= horizon)
    result = runner.invoke(args=["rollups", "verify"])
    assert result.exit_code == 0, result.output
    assert f"Rollups match the calls from {horizon.isoformat()} (the retention horizon) on" in result.output
    result = runner.invoke(args=["rollups", "rebuild"])  # keeps the pruned days' cells
    assert result.exit_code == 0 and "their day cells were kept" in result.output, result.output
    assert_cells_match(app, records, horizon)
    assert runner.invoke(args=["rollups", "verify"]).exit_code == 0
    with app.app_context():  # a damaged day cell before the horizon: its month cells no longer match
        first_day = (UsageRollup.select(UsageRollup.id).where(UsageRollup.grain == "day")
                     .order_by(UsageRollup.cell_start).limit(1).scalar())
        UsageRollup.update(calls=UsageRollup.calls + 1).where(UsageRollup.id == first_day).execute()
    result = runner.invoke(args=["rollups", "verify"])
    assert result.exit_code == 1 and "numbers" in result.output


@pytest.mark.app_config(RETENTION_DAYS="")
def test_without_retention_days_prune_deletes_nothing(app, runner, keys):
    keys.tenant("t-a")
    store(app, [record("t-a", dt.datetime(2001, 1, 1, tzinfo=UTC))])
    result = runner.invoke(args=["calls", "prune"])
    assert result.exit_code == 0 and "RETENTION_DAYS is not set: every call is kept." in result.output
    assert len(stored_timestamps(app)) == 1


def test_prune_refuses_while_calls_lack_their_cells(site, runner):
    with site["app"].app_context():
        database.execute_sql("UPDATE usage_rollup_state SET needs_rebuild = TRUE")
    result = runner.invoke(args=["calls", "prune"])
    assert result.exit_code == 1 and "rollups rebuild` first" in result.output
    assert len(stored_timestamps(site["app"])) == len(site["records"])


def test_ingestion_refuses_calls_before_the_horizon_of_the_moment(client, keys, runner):
    keys.tenant("t-a")
    key = keys.key("t-a")
    horizon = horizon_for(dt.datetime.now(UTC), DAYS)
    late = to_json(record("t-a", horizon - US))
    response = client.post("/v1/usage/calls", headers=auth(key), json={"calls": [late]})
    assert response.status_code == 422
    reason = response.get_json()["errors"]["json"]["calls"]["0"]["timestamp"][0]
    assert reason.startswith(f"Outside the accepted range: from {horizon.isoformat()} (RETENTION_DAYS)")
    response = client.post("/v1/usage/calls", headers=auth(key), json={"calls": [to_json(record("t-a", horizon))]})
    assert response.status_code == 201
    result = runner.invoke(args=["calls", "import", "-"], input=jsonl([record("t-a", horizon - US)]))
    assert result.exit_code == 1 and "(RETENTION_DAYS)" in result.output


def test_migration_013_rolls_back_and_forth(app, site, client):
    prune_at(app)
    with app.app_context():
        roll_back_through(database.obj, "013_retention")
        assert not database.table_exists("retention_state")
        assert "erasing_since" not in {c.name for c in database.get_columns("tenant")}
    from app.migrate import upgrade
    with app.app_context():
        upgrade(database.obj)
        assert (RetentionState.get().horizon, RetentionState.get().pruned_from) == (None, None)
    get(client, "/v1/usage/all", site["admin"])  # nothing recorded as pruned any more
