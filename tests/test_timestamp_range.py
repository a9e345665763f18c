"""The timestamps a call may have: CALLS_ACCEPTED_FROM to CALLS_ACCEPTED_AHEAD
past the server's clock, refused alike by POST /v1/usage/calls and
`calls import|sample`, all or nothing."""
import datetime as dt
import json

import pytest

from app import create_app
from app.db import ConfigurationError
from app.models import LlmCall
from app.timestamp_range import AcceptedRange
from conftest import auth
from data import UTC, jsonl, record, to_json
from test_first_hour import acme  # noqa: F401 (a fixture: acme's key, and a superuser's as "admin")

US = dt.timedelta(microseconds=1)
# A configured range: its start given with an offset, an hour ahead of the clock.
EARLIEST = dt.datetime(2010, 6, 1, tzinfo=UTC)
RANGE = {"CALLS_ACCEPTED_FROM": "2010-06-01T02:00:00+02:00", "CALLS_ACCEPTED_AHEAD": "3600"}
AHEAD = dt.timedelta(hours=1)
# Far beyond any clock skew of the request that carries it: the test cannot be flaky.
MARGIN = dt.timedelta(minutes=10)


def now():
    return dt.datetime.now(UTC)


def settings(tmp_path, monkeypatch, **environment):
    for variable in ("CALLS_ACCEPTED_FROM", "CALLS_ACCEPTED_AHEAD"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    config = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/usage.db"}).config
    return config["CALLS_ACCEPTED_FROM"], config["CALLS_ACCEPTED_AHEAD"]


def test_by_default_calls_from_2000_to_a_day_ahead(tmp_path, monkeypatch):
    assert settings(tmp_path, monkeypatch) == (dt.datetime(2000, 1, 1, tzinfo=UTC), dt.timedelta(days=1))


def test_the_range_comes_from_the_environment(tmp_path, monkeypatch):
    assert settings(tmp_path, monkeypatch, **RANGE) == (EARLIEST, AHEAD)


@pytest.mark.parametrize("variable, value", [
    ("CALLS_ACCEPTED_FROM", "last year"),
    ("CALLS_ACCEPTED_FROM", "2000-01-01T00:00:00"),  # no offset
    ("CALLS_ACCEPTED_FROM", "0001-01-01T00:00:00+01:00"),  # before year 1 in UTC
    ("CALLS_ACCEPTED_AHEAD", "a day"),
    ("CALLS_ACCEPTED_AHEAD", "-1"),
    ("CALLS_ACCEPTED_AHEAD", "nan"),
    ("CALLS_ACCEPTED_AHEAD", "inf"),
    ("CALLS_ACCEPTED_AHEAD", str(366 * 86400 + 1)),  # more than a year is no clock skew
])
def test_a_bad_setting_stops_the_app_naming_it(tmp_path, monkeypatch, variable, value):
    with pytest.raises(ConfigurationError, match=variable):
        settings(tmp_path, monkeypatch, **{variable: value})


def test_both_ends_are_included_to_the_microsecond():
    latest = dt.datetime(2026, 12, 1, 12, tzinfo=UTC)
    accepted = AcceptedRange(EARLIEST, latest, AHEAD)
    assert [accepted.refuses(moment) for moment in (EARLIEST - US, EARLIEST, latest, latest + US)] == [
        True, False, False, True]


def post(client, key, records):
    response = client.post("/v1/usage/calls", headers=auth(key), json={"calls": [to_json(r) for r in records]})
    return response.status_code, json.loads(response.data)


def stored(app):
    with app.app_context():
        return sorted(call.timestamp for call in LlmCall.select())


def assert_names_the_range(reason):
    assert reason.startswith("Outside the accepted range: from 2010-06-01T00:00:00+00:00 (CALLS_ACCEPTED_FROM) "
                             "to 3600 s past the server's clock (CALLS_ACCEPTED_AHEAD)"), reason


@pytest.mark.app_config(**RANGE)
def test_post_accepts_both_ends_and_refuses_the_batch_for_one_outside(app, client, acme):
    latest = now() + AHEAD  # the server's clock reads this or later when it checks
    inside = [record("acme", EARLIEST), record("acme", latest)]
    outside = [record("acme", EARLIEST - US), record("acme", now() + AHEAD + MARGIN)]
    status, body = post(client, acme["tenant"], [outside[0], *inside, outside[1]])
    assert status == 422
    errors = body["errors"]["json"]["calls"]
    assert set(errors) == {"0", "3"} and all(set(error) == {"timestamp"} for error in errors.values())
    assert_names_the_range(errors["0"]["timestamp"][0])
    assert stored(app) == []
    assert post(client, acme["tenant"], inside)[0] == 201
    assert stored(app) == [EARLIEST, latest]


@pytest.mark.app_config(**RANGE)
def test_a_superuser_batch_names_every_reason_of_every_record(app, client, acme):
    early = record("acme", EARLIEST - US)
    early_and_unknown = record("nobody", EARLIEST - dt.timedelta(days=1))
    status, body = post(client, acme["admin"], [record("acme", EARLIEST), early, early_and_unknown])
    assert status == 422
    errors = body["errors"]["json"]["calls"]
    assert {index: set(error) for index, error in errors.items()} == {"1": {"timestamp"},
                                                                       "2": {"timestamp", "tenant_id"}}
    assert stored(app) == []


def test_by_default_a_call_dated_9999_is_refused(app, client, acme):
    status, body = post(client, acme["tenant"], [record("acme", dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC))])
    assert status == 422
    reason = body["errors"]["json"]["calls"]["0"]["timestamp"][0]
    assert "from 2000-01-01T00:00:00+00:00 (CALLS_ACCEPTED_FROM) to 86400 s past" in reason
    assert stored(app) == []


@pytest.mark.app_config(**RANGE)
def test_import_refuses_every_line_outside_and_imports_nothing(app, runner, acme):
    lines = jsonl([record("acme", EARLIEST), record("acme", EARLIEST - US), record("acme", now() + AHEAD + MARGIN)])
    result = runner.invoke(args=["calls", "import", "-"], input=lines)
    assert result.exit_code == 1
    refused = [line for line in result.output.splitlines() if line.startswith("line ")]
    assert [line.split(": ", 2)[:2] for line in refused] == [["line 2", "timestamp"], ["line 3", "timestamp"]]
    assert_names_the_range(refused[0].split(": ", 2)[2])
    assert "Nothing imported: 2 invalid line(s)." in result.output
    assert stored(app) == []
    latest = now() + AHEAD
    inside = jsonl([record("acme", EARLIEST), record("acme", latest)])
    result = runner.invoke(args=["calls", "import", "-"], input=inside)
    assert result.exit_code == 0, result.output
    assert stored(app) == [EARLIEST, latest]


@pytest.mark.app_config(CALLS_ACCEPTED_FROM="2999-01-01T00:00:00Z")
def test_calls_sample_is_refused_by_the_range_too(app, runner, acme):
    result = runner.invoke(args=["calls", "sample", "--days", "2", "--per-day", "3"])
    assert result.exit_code == 1
    assert ("timestamp: Outside the accepted range: from 2999-01-01T00:00:00+00:00 (CALLS_ACCEPTED_FROM)"
            in result.output)
    assert stored(app) == []
