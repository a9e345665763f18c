"""failed_day cells (app/rollups.py, FAILED_DAY): a UTC day's failed calls of
one (tenant, operation, model), every error class together. Answers keyed
and filtered by no error class add up the day cells of ok calls and these;
answers by error class the day cells of each class. The tests prove which
cells an answer reads by deleting the others: its numbers stay exactly
those computed here from the records.
"""
import datetime as dt

from app.db import database
from app.migrate import upgrade
from app.models import UsageRollup
from app.repository.rollups.keep import COMPACT_AFTER
from conftest import roll_back_through
from expected import expected_stats, group_stats, in_window
from test_rollups import assert_cells_match, assert_close, get, stored, window_params  # noqa: F401 (stored)
from test_series import utc
from data import UTC, record, store

# Whole UTC days inside February 2026, not the whole month: day cells alone.
START, END = dt.datetime(2026, 2, 3, tzinfo=UTC), dt.datetime(2026, 2, 25, tzinfo=UTC)


def delete_cells(app, *where):
    with app.app_context(), database.atomic():
        return UsageRollup.delete().where(*where).execute()


def superuser_of(keys):
    keys.tenant("ops", allows_superusers=True)
    return keys.key("ops", superuser=True)


def test_totals_by_no_error_class_read_failed_day_cells(app, client, keys, stored):
    superuser = superuser_of(keys)
    failed = [r for r in stored if r["status"] == "error" and in_window(r, START, END)]
    assert failed and len({r.get("error_class") for r in failed}) > 1
    assert delete_cells(app, (UsageRollup.grain == "day") & (UsageRollup.status == "error")) > 0
    body = get(client, "/v1/usage/all", superuser, **window_params(START, END), percentiles="approximate")
    assert_close(body["total"], expected_stats(stored, None, START, END))
    assert body["total"]["failed_calls"] == len(failed)
    for stats in body["tenants"]:
        assert_close(stats, expected_stats(stored, stats["tenant_id"], START, END))
    body = get(client, "/v1/usage/all/series", superuser, **window_params(START, END), bucket="day",
               group_by="operation,status", percentiles="approximate")
    assert body["percentiles"] == "approximate"
    for bucket in body["buckets"]:
        chosen = [r for r in stored if in_window(r, utc(bucket["start"]), utc(bucket["end"]))]
        assert [(g["operation"], g["status"]) for g in bucket["groups"]] == sorted(
            {(r["operation"], r["status"]) for r in chosen})
        for group in bucket["groups"]:
            assert_close(group, group_stats([r for r in chosen if (r["operation"], r["status"])
                                             == (group["operation"], group["status"])]))


def test_answers_by_error_class_read_the_day_cells_of_each_class(app, client, keys, stored):
    superuser = superuser_of(keys)
    assert delete_cells(app, UsageRollup.grain == "failed_day") > 0
    body = get(client, "/v1/usage/all/series", superuser, **window_params(START, END), bucket="day",
               group_by="status,error_class", percentiles="approximate")
    failed = 0
    for bucket in body["buckets"]:
        chosen = [r for r in stored if in_window(r, utc(bucket["start"]), utc(bucket["end"]))]
        assert [(g["status"], g["error_class"]) for g in bucket["groups"]] == sorted(
            {(r["status"], r.get("error_class")) for r in chosen}, key=lambda k: (k[0], k[1] or ""))
        for group in bucket["groups"]:
            assert_close(group, group_stats([r for r in chosen if (r["status"], r.get("error_class"))
                                             == (group["status"], group["error_class"])]))
            failed += group["failed_calls"]
    assert failed == len([r for r in stored if r["status"] == "error" and in_window(r, START, END)]) > 0


def test_migration_018_builds_failed_day_cells_from_the_day_cells(app, runner, stored):
    """Rolled back (its cells deleted) and applied again: the failed_day
    cells are those computed here, and `rollups verify` finds every cell
    as the calls make it (numbers, and no sketches in failed_day cells)."""
    with app.app_context():
        roll_back_through(database.obj, "018_failed_day_cells")
        assert not UsageRollup.select().where(UsageRollup.grain == "failed_day").exists()
        upgrade(database.obj)
    assert_cells_match(app, stored)
    result = runner.invoke(args=["rollups", "verify"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        sketches = {bytes(b) for (b,) in UsageRollup.select(UsageRollup.call_duration_sketch)
                    .where(UsageRollup.grain == "failed_day").tuples()}
    assert sketches == {b""}


def test_a_failed_day_cell_compacted_alone(app, runner, keys):
    """A failed_day cell's sketches are empty; when it is the only cell a
    batch compacts (its COMPACT_AFTER-th piece, while the tenant_day and
    model_day cells of the same calls, written once more before, are out of
    phase and the day cells split by error class), the batch is stored (it
    once answered 500: merging no pairs at all failed) and every cell is
    what the calls make."""
    keys.tenant("t-a")
    moment = dt.datetime(2026, 5, 3, 10, 7, tzinfo=UTC)
    records = [record("t-a", moment, operation="summarize", status="error")]  # out of phase
    for i in range(COMPACT_AFTER):
        records.append(record("t-a", moment + dt.timedelta(seconds=i + 1), status="error",
                              error_class=("RateLimitError", "APITimeoutError")[i % 2]))
    for call in records:
        store(app, [call])
    with app.app_context():
        pieces = dict(UsageRollup.select(UsageRollup.grain, UsageRollup.sketch_pieces)
                      .where((UsageRollup.grain == "failed_day") & (UsageRollup.operation == "analyze")).tuples())
    assert pieces == {"failed_day": 1}  # compacted at the last batch
    assert_cells_match(app, records)
    result = runner.invoke(args=["rollups", "verify"])
    assert result.exit_code == 0, result.output
