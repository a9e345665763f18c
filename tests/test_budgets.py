"""Budgets: their routes, numbers and periods, the enforcement check, and the CLI."""
import datetime as dt
import math
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from app.budgets import periods
from app.db import database
from app.models import LlmCall, UsageRollup, UsageRollupState
from app.repository import spend
from conftest import auth
from data import record, to_json

UTC = dt.timezone.utc


@pytest.fixture
def keys_(keys):
    keys.tenant("acme")
    keys.tenant("globex")
    keys.tenant("ops", allows_superusers=True)
    return {"admin": keys.key("ops", superuser=True), "acme": keys.key("acme"), "globex": keys.key("globex"),
            "backend": keys.key("ops", superuser=True, scopes=["calls:write"])}


def now():
    return dt.datetime.now(UTC)


def post_calls(client, key, records):
    response = client.post("/v1/usage/calls", headers=auth(key), json={"calls": [to_json(r) for r in records]})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def create(client, key, tenant_id="acme", **fields):
    body = {"name": "cap", "amount_usd": "10", "period": "month", **fields}
    return client.post(f"/v1/tenants/{tenant_id}/budgets", headers=auth(key), json=body)


def test_create_answers_the_budget_and_its_status(client, keys_):
    start = now()
    response = create(client, keys_["admin"], amount_usd="12.5", period="day", tz="Asia/Kolkata")
    assert response.status_code == 201
    budget = response.get_json()
    assert {k: budget[k] for k in ("tenant_id", "name", "amount_usd", "period", "tz", "thresholds", "enforce",
                                   "model", "operation", "revision")} == {
        "tenant_id": "acme", "name": "cap", "amount_usd": 12.5, "period": "day", "tz": "Asia/Kolkata",
        "thresholds": [80, 100], "enforce": False, "model": None, "operation": None, "revision": 1}
    status = budget["status"]
    local = start.astimezone(ZoneInfo("Asia/Kolkata"))
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    assert status["period_start"] == midnight.isoformat() and status["period_start"].endswith("+05:30")
    assert status["period_end"] == (midnight + dt.timedelta(days=1)).isoformat()
    assert (status["spent_usd"], status["remaining_usd"], status["percent_used"], status["thresholds_crossed"],
            status["projected_usd"]) == (0, 12.5, 0, [], 0)


@pytest.mark.parametrize("fields, named", [
    ({"tz": "Mars/Olympus"}, "tz"), ({"amount_usd": "0"}, "amount_usd"), ({"amount_usd": "-1"}, "amount_usd"),
    ({"amount_usd": "0.0000001"}, "amount_usd"), ({"period": "year"}, "period"),
    ({"thresholds": [0]}, "thresholds"), ({"thresholds": [1000.01]}, "thresholds"),
    ({"thresholds": [12.345]}, "thresholds"), ({"thresholds": []}, "thresholds"),
    ({"operation": "Not An Op"}, "operation"), ({"name": ""}, "name"), ({"colour": "red"}, "colour"),
])
def test_bad_fields_are_422_naming_them_and_nothing_is_created(client, keys_, fields, named):
    response = create(client, keys_["admin"], **fields)
    assert response.status_code == 422
    assert named in response.get_json()["errors"]["json"]
    assert client.get("/v1/tenants/acme/budgets", headers=auth(keys_["admin"])).get_json() == []


def test_who_sees_and_changes_which_budget(client, keys_):
    acme = create(client, keys_["admin"]).get_json()
    globex = create(client, keys_["admin"], tenant_id="globex", name="g").get_json()
    assert create(client, keys_["admin"], tenant_id="nobody").status_code == 404
    assert create(client, keys_["acme"]).status_code == 403
    assert [b["id"] for b in client.get("/v1/budgets", headers=auth(keys_["acme"])).get_json()] == [acme["id"]]
    assert client.get(f"/v1/budgets/{acme['id']}", headers=auth(keys_["acme"])).status_code == 200
    other = client.get(f"/v1/budgets/{globex['id']}", headers=auth(keys_["acme"]))
    assert other.status_code == 404 and other.get_json()["message"] == f"Unknown budget {globex['id']}."
    assert client.get(f"/v1/budgets/{globex['id']}", headers=auth(keys_["admin"])).status_code == 200
    assert client.patch(f"/v1/budgets/{acme['id']}", headers=auth(keys_["acme"]), json={}).status_code == 403
    changed = client.patch(f"/v1/budgets/{acme['id']}", headers=auth(keys_["admin"]),
                           json={"name": "renamed", "enforce": True}).get_json()
    assert (changed["name"], changed["enforce"], changed["revision"], changed["amount_usd"]) == ("renamed", True, 1, 10)
    revised = client.patch(f"/v1/budgets/{acme['id']}", headers=auth(keys_["admin"]),
                           json={"amount_usd": "20", "model": "gpt-4o"}).get_json()
    assert (revised["revision"], revised["amount_usd"], revised["model"]) == (2, 20, "gpt-4o")
    assert client.delete(f"/v1/budgets/{acme['id']}", headers=auth(keys_["admin"])).status_code == 204
    assert client.get(f"/v1/budgets/{acme['id']}", headers=auth(keys_["admin"])).status_code == 404
    actions = [e["action"] for e in client.get("/v1/audit", headers=auth(keys_["admin"])).get_json()]
    assert actions[:5] == ["budget.delete", "budget.update", "budget.update", "budget.create", "budget.create"]


def test_spent_is_what_usage_sums_for_the_period_in_the_budgets_zone(client, keys_):
    zone = ZoneInfo("America/New_York")
    today = now().astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today.replace(day=1)
    records = [
        record("acme", start.astimezone(UTC), cost="0.999999"),  # exactly at the period's start
        record("acme", start - dt.timedelta(microseconds=1), cost="100"),  # just before it
        record("acme", start + dt.timedelta(hours=5), cost="0.1", model="gpt-4o"),
        record("acme", start + dt.timedelta(hours=6), cost="0.2", status="error"),  # errors cost nothing
        record("globex", start + dt.timedelta(hours=7), cost="50"),  # another tenant
    ]
    post_calls(client, keys_["admin"], records)
    budget = create(client, keys_["admin"], period="month", tz="America/New_York", amount_usd="4",
                    thresholds=[25, 27.5, 50]).get_json()
    usage = client.get("/v1/usage", headers=auth(keys_["acme"]), query_string={
        "from": budget["status"]["period_start"], "to": budget["status"]["period_end"]}).get_json()
    status = budget["status"]
    assert status["period_start"] == start.isoformat()
    assert Decimal(str(status["spent_usd"])) == Decimal("1.099999") == Decimal(str(usage["total_cost_usd"]))
    assert Decimal(str(status["remaining_usd"])) == Decimal("2.900001")
    assert status["percent_used"] == 27.5  # 27.499975, rounded for showing
    assert status["thresholds_crossed"] == [25]  # compared exactly: 27.499975% is short of 27.5
    by_model = create(client, keys_["admin"], period="month", tz="America/New_York", model="gpt-4o").get_json()
    assert by_model["status"]["spent_usd"] == Decimal("0.1")


def test_thresholds_compare_exactly(client, keys_):
    post_calls(client, keys_["acme"], [record("acme", now() - dt.timedelta(seconds=5), cost="0.333333")])
    status = create(client, keys_["admin"], period="day", amount_usd="1", thresholds=[33.3333, 33.33])
    assert status.status_code == 422  # 2 decimals at most
    status = create(client, keys_["admin"], period="day", amount_usd="1",
                    thresholds=[33.33, 33.34]).get_json()["status"]
    assert status["thresholds_crossed"] == [Decimal("33.33")] and status["percent_used"] == Decimal("33.33")


def test_projection_extrapolates_the_spend_so_far_over_the_period(client, keys_):
    post_calls(client, keys_["acme"], [record("acme", now() - dt.timedelta(seconds=5), cost="3")])
    before = now()
    status = create(client, keys_["admin"], period="week", tz="Europe/Berlin").get_json()["status"]
    after = now()
    start, end = (dt.datetime.fromisoformat(status[k]) for k in ("period_start", "period_end"))
    assert start.astimezone(ZoneInfo("Europe/Berlin")).weekday() == 0
    if before - start < dt.timedelta(minutes=1):
        pytest.skip("the week began less than a minute ago: nothing to extrapolate")
    low, high = (Decimal(3) * Decimal((end - start) / (moment - start)) for moment in (after, before))
    assert low - Decimal("0.000001") <= Decimal(str(status["projected_usd"])) <= high + Decimal("0.000001")


@pytest.mark.parametrize("zone, moment, period, start, end", [
    ("America/New_York", "2026-03-08T12:00:00+00:00", "day", "2026-03-08T00:00:00-05:00", "2026-03-09T00:00:00-04:00"),
    ("Europe/Berlin", "2026-10-25T12:00:00+00:00", "day", "2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00"),
    ("Europe/Berlin", "2026-03-29T00:30:00+00:00", "week", "2026-03-23T00:00:00+01:00", "2026-03-30T00:00:00+02:00"),
    ("America/New_York", "2026-11-01T03:59:59+00:00", "month", "2026-10-01T00:00:00-04:00", "2026-11-01T00:00:00-04:00"),
    ("America/New_York", "2026-11-01T04:00:00+00:00", "month", "2026-11-01T00:00:00-04:00", "2026-12-01T00:00:00-05:00"),
    ("Asia/Kathmandu", "2026-12-31T18:14:59+00:00", "month", "2026-12-01T00:00:00+05:45", "2027-01-01T00:00:00+05:45"),
])
def test_periods_are_the_zones_calendar_dst_exact(zone, moment, period, start, end):
    found = periods.containing(dt.datetime.fromisoformat(moment), period, zone)
    assert (found.local(found.start), found.local(found.end)) == (start, end)


@pytest.mark.parametrize("zone, kind, moment", [
    ("Asia/Kolkata", "week", "2026-10-28T12:00:00+00:00"),
    ("Europe/Berlin", "week", "2026-10-22T12:00:00+00:00"),  # DST ends on its Sunday
    ("Asia/Kathmandu", "month", "2026-11-15T12:00:00+00:00"),
    ("Asia/Kolkata", "day", "2026-10-28T12:00:00+00:00"),  # holds no whole UTC day
    ("UTC", "day", "2026-10-28T12:00:00+00:00"),  # one whole UTC day
])
def test_a_periods_spend_is_exact_its_whole_utc_days_read_from_cells(app, client, keys_, zone, kind, moment):
    """A budget's spend in a past period (what a backfill's first batch
    starts its counter with) is the exact sum of its ok calls: the period's
    whole UTC days from their day cells, which keep what a prune deletes,
    and its part-days from the calls."""
    period = periods.containing(dt.datetime.fromisoformat(moment), kind, zone)
    first_midnight = (period.start + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    if period.start.time() == dt.time(0):
        first_midnight = period.start
    us, middle = dt.timedelta(microseconds=1), period.start + (period.end - period.start) / 2
    records = [
        record("acme", period.start, cost="0.1"),  # exactly at the start: counted
        record("acme", period.start - us, cost="100"),  # just before: not
        record("acme", period.end - us, cost="0.2"),  # the last microsecond: counted
        record("acme", period.end, cost="200"),  # exactly at the end: not
        record("acme", first_midnight - us, cost="0.000001"),
        record("acme", first_midnight, cost="1234.567891"),
        record("acme", middle, cost="0.3", model="gpt-4o"),
        record("acme", middle, cost="0.7", status="error"),  # errors cost nothing
        record("globex", middle, cost="50"),  # another tenant
    ]
    post_calls(client, keys_["admin"], records)

    def expected(model=None):
        return sum(int(r["cost_usd"] * 1_000_000) for r in records
                   if r["tenant_id"] == "acme" and r["status"] == "ok" and period.start <= r["timestamp"] < period.end
                   and model in (None, r["model"]))

    with app.app_context():
        assert spend.spent("acme", period.start, period.end) == expected() > 0
        assert spend.spent("acme", period.start, period.end, model="gpt-4o") == expected("gpt-4o") == 300_000
        assert spend.spent_in_each([("acme", period.start, period.end, None, None),
                                    ("acme", period.start, period.end, "gpt-4o", "analyze"),
                                    ("acme", period.start, period.end, None, "summarize")]) == [
            expected(), expected("gpt-4o"), 0]
        last_midnight = period.end.replace(hour=0, minute=0, second=0, microsecond=0)
        with database.atomic():  # the calls of the whole UTC days go, as a prune deletes them
            deleted = (LlmCall.delete()
                       .where((LlmCall.timestamp >= first_midnight) & (LlmCall.timestamp < last_midnight))
                       .execute())
        assert deleted == sum(first_midnight <= r["timestamp"] < last_midnight for r in records)
        assert deleted > 0 or (zone, kind) == ("Asia/Kolkata", "day")
        assert spend.spent("acme", period.start, period.end) == expected()


def test_while_a_rebuild_is_due_a_periods_spend_is_summed_from_calls(app, client, keys_):
    """Calls stored before the rollups existed (migration 004) are in no
    cell until `rollups rebuild`: meanwhile spend reads every day's calls."""
    period = periods.containing(dt.datetime(2026, 10, 28, 12, tzinfo=UTC), "week", "Europe/Berlin")
    records = [record("acme", period.start + dt.timedelta(days=day, hours=3), cost=cost)
               for day, cost in ((0, "0.1"), (2, "0.2"), (3, "0.000001"), (6, "0.3"))]
    post_calls(client, keys_["admin"], records)
    with app.app_context():
        UsageRollup.delete().execute()  # as before the rollups existed
        UsageRollupState.update(needs_rebuild=True).execute()
        assert spend.spent("acme", period.start, period.end) == 600_001


def check(client, key, **params):
    return client.get("/v1/budgets/check", headers=auth(key), query_string=params)


def test_the_check_refuses_once_an_enforced_budget_is_spent(client, keys_):
    assert check(client, keys_["acme"]).get_json() == {"allowed": True, "tenant_id": "acme", "budgets": []}
    budget = create(client, keys_["admin"], period="day", amount_usd="1", enforce=True).get_json()
    create(client, keys_["admin"], period="day", amount_usd="0.5", name="watch only")  # not enforced
    model_cap = create(client, keys_["admin"], period="day", amount_usd="0.5", enforce=True, model="gpt-4o").get_json()
    post_calls(client, keys_["acme"], [record("acme", now() - dt.timedelta(seconds=5), cost="0.6")])
    allowed = check(client, keys_["acme"])
    assert allowed.status_code == 200 and [b["id"] for b in allowed.get_json()["budgets"]] == [budget["id"]]
    refused = check(client, keys_["acme"], model="gpt-4o")
    assert refused.status_code == 200  # the gpt-4o budget counts only gpt-4o calls: none yet
    post_calls(client, keys_["acme"], [record("acme", now() - dt.timedelta(seconds=5), cost="0.4")])
    before = now()
    refused = check(client, keys_["acme"], model="gpt-4o-mini")
    after = now()
    assert refused.status_code == 429
    body = refused.get_json()
    ends = dt.datetime.fromisoformat(body["resets_at"])
    assert (body["allowed"], body["budget_id"], body["amount_usd"], body["spent_usd"]) == (False, budget["id"], 1, 1)
    assert body["resets_at"] == budget["status"]["period_end"]
    assert math.ceil((ends - after).total_seconds()) <= int(refused.headers["Retry-After"]) \
        <= math.ceil((ends - before).total_seconds())
    assert model_cap["id"] not in [b["id"] for b in body["budgets"]]
    # Recording calls is never refused because of a budget.
    post_calls(client, keys_["acme"], [record("acme", now() - dt.timedelta(seconds=5), cost="5")])
    assert check(client, keys_["globex"]).status_code == 200  # another tenant's budget


def test_the_check_with_a_superuser_key_names_the_tenant(client, keys_):
    missing = check(client, keys_["backend"])
    assert missing.status_code == 422 and "tenant_id" in missing.get_json()["errors"]["query"]
    assert check(client, keys_["backend"], tenant_id="acme").get_json()["tenant_id"] == "acme"
    assert check(client, keys_["backend"], tenant_id="nobody").status_code == 404
    assert check(client, keys_["acme"], tenant_id="globex").status_code == 403
    assert check(client, keys_["acme"], tenant_id="acme").status_code == 200


def invoke(runner, *args):
    return runner.invoke(args=list(args))


def test_the_cli_creates_lists_and_deletes_budgets(client, runner, keys_):
    created = invoke(runner, "budgets", "create", "--tenant", "acme", "--name", "monthly", "--amount", "250",
                     "--period", "month", "--tz", "Europe/Berlin", "--threshold", "50", "--threshold", "90")
    assert created.exit_code == 0, created.output
    assert created.output.startswith("Created budget ") and "0.000000 of 250.000000 USD this month" in created.output
    budget_id = int(created.output.split()[2])
    listed = invoke(runner, "budgets", "list", "--tenant", "acme")
    assert listed.output.startswith(f"{budget_id}\tmonthly\t")
    shown = client.get(f"/v1/budgets/{budget_id}", headers=auth(keys_["acme"])).get_json()
    assert (shown["thresholds"], shown["tz"]) == ([50, 90], "Europe/Berlin")
    bad = invoke(runner, "budgets", "create", "--tenant", "acme", "--name", "x", "--amount", "-3", "--period", "day")
    assert bad.exit_code == 1 and "amount_usd" in bad.output
    assert invoke(runner, "budgets", "list", "--tenant", "nobody").exit_code == 1
    assert invoke(runner, "budgets", "delete", str(budget_id)).output == f"Deleted budget {budget_id} of tenant acme.\n"
    assert invoke(runner, "budgets", "delete", str(budget_id)).exit_code == 1
    with client.application.app_context():
        from app.models import AuditEvent
        assert [(e.action, e.actor) for e in AuditEvent.select().where(AuditEvent.action.startswith("budget"))
                .order_by(AuditEvent.id)] == [("budget.create", "cli"), ("budget.delete", "cli")]
