"""Series in any zone from rollups: model_day cells' quarter hours (app/quarters.py).

Answers grouped and filtered by no more than model and status take every
whole UTC quarter hour from model_day cells, and raw calls only for the
window's ends finer than that. The tests prove it by deleting the raw
calls of those quarters after storing them: the approximate answers stay
those of the calls stored (computed here from the records), where the
exact ones change.
"""
import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from app.db import database
from app.models import LlmCall
from app.repository import erasure as stored_erasure
from expected import group_stats, in_window
from test_rollups import (assert_cells_match, assert_close, get, insert_bypassing_rollups,  # noqa: F401 (stored)
                          stored, window_params)
from test_series import check_calendar, utc
from data import UTC

# Whole quarter hours inside each window; its ends are not on one.
WINDOWS = [(dt.datetime(2026, 3, 27, 22, 17, 3, tzinfo=UTC), dt.datetime(2026, 3, 31, 3, 2, tzinfo=UTC), "hour"),
           (dt.datetime(2026, 2, 20, 5, 7, tzinfo=UTC), dt.datetime(2026, 4, 2, 19, 52, 30, tzinfo=UTC), "day"),
           (dt.datetime(2026, 1, 22, 0, 7, tzinfo=UTC), dt.datetime(2026, 4, 8, 23, 59, tzinfo=UTC), "week")]


def quarter_floor(moment):
    return moment.replace(minute=moment.minute - moment.minute % 15, second=0, microsecond=0)


def delete_raw_calls(app, lo, hi):
    """Delete the stored calls of [lo, hi), leaving their cells: from now on
    only cells can give them."""
    with app.app_context(), database.atomic():
        return LlmCall.delete().where((LlmCall.timestamp >= lo) & (LlmCall.timestamp < hi)).execute()


@pytest.fixture
def site(stored, keys):
    """test_rollups' adversarial records, stored, and a superuser key."""
    keys.tenant("ops", allows_superusers=True)
    return stored, keys.key("ops", superuser=True)


def check_series(client, superuser, records, start, end, unit, zone, group_by, filters, precision="approximate"):
    body = get(client, "/v1/usage/all/series", superuser, **window_params(start, end), bucket=unit, tz=zone,
               percentiles=precision, **({"group_by": ",".join(group_by)} if group_by else {}), **filters)
    assert body["percentiles"] == precision
    check_calendar(body["buckets"], start, end, unit, ZoneInfo(zone))
    for bucket in body["buckets"]:
        chosen = [r for r in records if in_window(r, utc(bucket["start"]), utc(bucket["end"]))
                  and all(r[name] in values for name, values in filters.items())]
        if not group_by:
            assert_close(bucket["groups"][0], group_stats(chosen))
            continue
        keys_found = sorted({tuple(r[name] for name in group_by) for r in chosen})
        assert [tuple(g[name] for name in group_by) for g in bucket["groups"]] == keys_found
        for group in bucket["groups"]:
            assert_close(group, group_stats([r for r in chosen if all(r[n] == group[n] for n in group_by)]))


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/St_Johns", "Asia/Kolkata", "Asia/Kathmandu"])
def test_every_whole_quarter_hour_comes_from_cells(app, client, site, zone):
    """Hours (a DST change in Berlin and St. John's on 2026-03-08/29), days
    and weeks at +01:00/+02:00, -03:30/-02:30, +05:30 and +05:45: the calls
    of their whole quarter hours deleted, approximate answers hold them all."""
    records, superuser = site
    for start, end, unit in WINDOWS:
        inside = quarter_floor(start) + dt.timedelta(minutes=15), quarter_floor(end)
        assert delete_raw_calls(app, *inside) > 0
        for group_by, filters in (((), {}), (("model",), {}), (("status",), {"model": ["gpt-4o", "claude-haiku"]}),
                                  (("model", "status"), {"status": ["ok"]})):
            check_series(client, superuser, records, start, end, unit, zone, group_by, filters)
        insert_bypassing_rollups(app, [r for r in records if in_window(r, *inside)])  # the calls again, cells as they are


def test_exact_answers_and_other_keys_read_the_calls(app, client, site):
    """The same deletion changes exact answers, and approximate ones keyed by
    tenant (no model_day cell holds a tenant): cells serve model and status only."""
    records, superuser = site
    start, end, unit = WINDOWS[1]
    inside = quarter_floor(start) + dt.timedelta(minutes=15), quarter_floor(end)
    kept = [r for r in records if not in_window(r, *inside)]
    day_inside = dt.datetime(2026, 3, 1, tzinfo=UTC), dt.datetime(2026, 3, 2, tzinfo=UTC)
    delete_raw_calls(app, *day_inside)
    without_day = [r for r in records if not in_window(r, *day_inside)]
    check_series(client, superuser, without_day, start, end, unit, "Asia/Kolkata", ("model",), {}, "exact")
    check_series(client, superuser, records, start, end, unit, "Asia/Kolkata", ("model",), {})
    delete_raw_calls(app, *inside)
    assert kept != records
    check_series(client, superuser, kept, start, end, unit, "Asia/Kolkata", ("tenant_id",), {})


def test_an_erased_tenant_leaves_the_model_day_cells(app, client, site, runner):
    """model_day cells hold every tenant's calls: erasing one recomputes
    them from the calls that remain, and verify holds."""
    records, superuser = site
    tenant = max({r["tenant_id"] for r in records}, key=lambda t: sum(r["tenant_id"] == t for r in records))
    result = runner.invoke(args=["tenants", "erase", tenant, "--yes"])
    assert result.exit_code == 0, result.output
    rest = [r for r in records if r["tenant_id"] != tenant]
    assert_cells_match(app, rest)
    with app.app_context():
        assert stored_erasure.days_of(tenant) == []
    start, end, unit = WINDOWS[1]
    check_series(client, superuser, rest, start, end, unit, "Europe/Berlin", ("model",), {})
    result = runner.invoke(args=["rollups", "verify"])
    assert result.exit_code == 0, result.output
