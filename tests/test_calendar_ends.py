"""Calls and windows at the ends of the calendar (years 1 and 9999).

Ingestion refuses such timestamps now (tests/test_timestamp_range.py), but
a database may hold calls an older version accepted: they are stored here
as it did, cells and all (`data.store`, past the validation). No answer
may then fail, and `rollups verify|rebuild` visit only the months holding
data. Windows and series reaching the calendar's ends answer or get a 422.
"""
import datetime as dt
import json
from decimal import Decimal

import pytest

from app.rollups import BEGINNING, END_OF_TIME, cover, following, starts_between
from conftest import auth
from data import UTC, record, store
from expected import in_window

LAST = dt.datetime.max.replace(tzinfo=UTC)  # 9999-12-31T23:59:59.999999Z
ZONES = ["UTC", "America/New_York", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Asia/Kathmandu"]
UNITS = ["hour", "day", "week", "month"]
# Windows touching the first and the last days of the calendar.
WINDOWS = [(dt.datetime(1, 1, 1, tzinfo=UTC), dt.datetime(1, 1, 3, tzinfo=UTC)),
           (dt.datetime(1, 1, 1, tzinfo=UTC), dt.datetime(1, 3, 1, tzinfo=UTC)),
           (dt.datetime(1, 1, 2, tzinfo=UTC), dt.datetime(1, 1, 9, 5, tzinfo=UTC)),
           (dt.datetime(9999, 11, 29, tzinfo=UTC), END_OF_TIME),
           (dt.datetime(9999, 12, 29, tzinfo=UTC), dt.datetime(9999, 12, 31, tzinfo=UTC)),
           (dt.datetime(9999, 10, 1, tzinfo=UTC), LAST)]
# What an older version could store: calls in both end months, and past END_OF_TIME.
LEGACY = [dt.datetime(1, 1, 1, 12, tzinfo=UTC), dt.datetime(1, 1, 5, tzinfo=UTC),
          dt.datetime(9999, 11, 30, 12, tzinfo=UTC), dt.datetime(9999, 12, 30, 12, tzinfo=UTC),
          dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)]


def params(start, end, **more):
    return {**{name: moment.isoformat() for name, moment in (("from", start), ("to", end)) if moment}, **more}


def test_no_cell_starts_at_or_after_end_of_time():
    assert following(dt.datetime(9999, 11, 1, tzinfo=UTC), "month") == END_OF_TIME
    assert following(dt.datetime(9999, 11, 30, tzinfo=UTC), "day") == END_OF_TIME
    for grain in ("day", "month"):
        assert following(END_OF_TIME, grain) == END_OF_TIME
        assert following(dt.datetime(9999, 12, 31, tzinfo=UTC), grain) == END_OF_TIME
        assert starts_between(dt.datetime(9999, 11, 1, tzinfo=UTC), LAST, grain)[-1] < END_OF_TIME


@pytest.mark.parametrize("start, end", [(None, None), (None, LAST), (BEGINNING, LAST),
                                        (dt.datetime(9999, 11, 15, 5, tzinfo=UTC), LAST),
                                        (dt.datetime(9999, 12, 2, tzinfo=UTC), LAST),
                                        (BEGINNING, dt.datetime(1, 1, 1, 5, tzinfo=UTC)), *WINDOWS])
def test_cover_tiles_the_window_with_cells_before_end_of_time(start, end):
    """Its cells and raw edges are contiguous from `from` to `to` (an open
    end is END_OF_TIME), and no cell lies past END_OF_TIME."""
    pieces = cover(start, end)
    ranges = sorted([(lo, hi) for _, lo, hi in pieces.cells] + [r for r in pieces.raw if r[0] < r[1]])
    lo, hi = start or BEGINNING, end or END_OF_TIME
    assert ranges[0][0] == lo and ranges[-1][1] == hi
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert all(cell_hi <= END_OF_TIME for _, _, cell_hi in pieces.cells)


@pytest.fixture
def key(keys):
    """The keys of acme, of a tenant without calls, and of a superuser."""
    for tenant in ("acme", "empty"):
        keys.tenant(tenant)
    keys.tenant("ops", allows_superusers=True)
    return {"acme": keys.key("acme"), "empty": keys.key("empty"), "super": keys.key("ops", superuser=True)}


def stored_as_before(app, moments):
    """acme's calls at `moments`, stored with their cells as an older version did."""
    records = [record("acme", moment, cost="0.25") for moment in moments]
    store(app, records)
    return records


@pytest.fixture
def legacy(app, key):
    return stored_as_before(app, LEGACY), key


def get(client, path, key, query):
    response = client.get(path, headers=auth(key), query_string=query)
    return response.status_code, json.loads(response.data, parse_float=Decimal)


def test_a_call_dated_9999_12_31_fails_no_tenants_answers(app, client, key):
    """The issue's case: the month of 9999-12 has cells that no month follows."""
    stored_as_before(app, [dt.datetime(2026, 11, 10, tzinfo=UTC), dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)])
    whole_month = params(dt.datetime(2026, 11, 1, tzinfo=UTC), dt.datetime(2026, 12, 1, tzinfo=UTC))
    for path, who in (("/v1/usage", "empty"), ("/v1/usage", "acme"), ("/v1/usage/all", "super"),
                      ("/v1/usage/series", "empty"), ("/v1/usage/all/series", "super")):
        for query in ({}, whole_month, *([{**whole_month, "bucket": "month"}] if "series" in path else [])):
            status, body = get(client, path, key[who], {**query, "percentiles": "approximate"})
            assert status == 200, (path, query, body)
    # Exact but for the percentiles: explicit ends read the calls past END_OF_TIME
    # as raw rows; open ones end at END_OF_TIME, as rollups verify says.
    for query, expected in ((params(None, LAST), 2), ({}, 1)):
        status, body = get(client, "/v1/usage", key["acme"], {**query, "percentiles": "approximate"})
        assert (status, body["total_calls"], body["total_cost_usd"]) == (200, expected, Decimal("0.25") * expected)


def test_verify_reports_calls_past_end_of_time_and_fails(runner, legacy):
    result = runner.invoke(args=["rollups", "verify"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "2 call(s) dated at or after 9999-12-01T00:00:00+00:00 lie past the last month" in result.output
    result = runner.invoke(args=["rollups", "rebuild"])
    assert result.exit_code == 0, result.output
    assert "2 call(s) dated at or after 9999-12-01T00:00:00+00:00" in result.output
    assert "over 2 month(s)" in result.output  # 0001-01 and 9999-11: no cell can hold 9999-12


def test_verify_and_rebuild_visit_only_the_months_holding_calls(app, runner, key):
    stored_as_before(app, [dt.datetime(2000, 1, 1, tzinfo=UTC), dt.datetime(2000, 1, 31, 23, tzinfo=UTC),
                           dt.datetime(2026, 12, 1, 5, tzinfo=UTC)])
    result = runner.invoke(args=["rollups", "verify"])
    assert result.exit_code == 0 and "Rollups match the calls (2 month(s))." in result.output, result.output
    result = runner.invoke(args=["rollups", "rebuild"])
    assert result.exit_code == 0 and "over 2 month(s)" in result.output, result.output


def test_the_first_and_the_last_month_of_the_domain_verify(app, runner, key):
    stored_as_before(app, [dt.datetime(1, 1, 1, tzinfo=UTC), dt.datetime(9999, 11, 30, tzinfo=UTC)])
    result = runner.invoke(args=["rollups", "verify"])
    assert result.exit_code == 0 and "Rollups match the calls (2 month(s))." in result.output, result.output


def assert_answer_or_422(status, body, start, end, records):
    """200 with every call of the window counted, or 422 naming from or to."""
    if status == 422:
        assert set(body["errors"]["query"]) <= {"from", "to"} and "calendar" in json.dumps(body), body
        return
    assert status == 200, body
    expected = sum(1 for r in records if in_window(r, start, end))
    if "buckets" in body:
        buckets = body["buckets"]
        moments = [dt.datetime.fromisoformat(text) for text in [b["start"] for b in buckets] + [buckets[-1]["end"]]]
        assert (moments[0], moments[-1]) == (start, end) and moments == sorted(moments)
        assert sum(b["groups"][0]["total_calls"] for b in buckets) == expected
    else:
        assert body["total_calls"] == expected


@pytest.mark.parametrize("zone", ZONES)
def test_series_at_the_calendars_ends_answer_or_are_422(client, legacy, zone):
    records, key = legacy
    for start, end in WINDOWS:
        for unit in UNITS:
            for precision in ("exact", "approximate"):
                query = params(start, end, tz=zone, bucket=unit, percentiles=precision)
                status, body = get(client, "/v1/usage/series", key["acme"], query)
                assert_answer_or_422(status, body, start, end, records)


def test_the_issues_series_are_422_naming_the_bound(client, legacy):
    _, key = legacy
    for query, field, reason in (
            ({"tz": "America/New_York", "from": "0001-01-01T00:00:00Z", "to": "0001-02-01T00:00:00Z"}, "from",
             "Too close to the start of the calendar: the day buckets of America/New_York around it would "
             "begin before 0001-01-01."),
            ({"tz": "Pacific/Kiritimati", "from": "9999-12-29T00:00:00Z", "to": "9999-12-31T00:00:00Z"}, "to",
             "Too close to the end of the calendar: the day buckets of Pacific/Kiritimati around it would "
             "end after 9999-12-31."),
            ({"to": "0001-01-10T00:00:00Z"}, "from", "Required when 'to' is within 30 days of 0001-01-01.")):
        status, body = get(client, "/v1/usage/series", key["empty"], query)
        assert (status, body["errors"]["query"]) == (422, {field: [reason]})


@pytest.mark.parametrize("precision", ["exact", "approximate"])
def test_statistics_of_windows_at_the_calendars_ends(client, legacy, precision):
    records, key = legacy
    for start, end in [*WINDOWS, (BEGINNING, LAST), (None, LAST), (None, dt.datetime(1, 1, 2, tzinfo=UTC))]:
        status, body = get(client, "/v1/usage", key["acme"], params(start, end, percentiles=precision))
        assert_answer_or_422(status, body, start, end, records)
        status, body = get(client, "/v1/usage/all", key["super"], params(start, end, percentiles=precision))
        assert_answer_or_422(status, body["total"] if status == 200 else body, start, end, records)
    for start in (BEGINNING, dt.datetime(9999, 12, 15, tzinfo=UTC)):  # open ends
        for path, who in (("/v1/usage", "acme"), ("/v1/usage/all", "super")):
            assert get(client, path, key[who], params(start, None, percentiles=precision))[0] == 200
