"""Threshold alerts: each threshold fires exactly once per budget, revision and
period, whatever the batches, retries, late calls and concurrency."""
import concurrent.futures
import datetime as dt
import json
import urllib.request
import uuid
from decimal import Decimal

import pytest

from app.budgets import periods
from app.db import database
from app.models import BudgetAlert, BudgetSpend, WebhookEvent
from app.repository import spend
from app.webhooks import endpoints
from conftest import auth, gunicorn
from data import record, to_json

UTC = dt.timezone.utc


@pytest.fixture
def site(app, keys):
    """Tenants acme and globex, an admin key, and an endpoint that wants every event
    (so that each alert is an event in the outbox)."""
    keys.tenant("acme")
    keys.tenant("globex")
    keys.tenant("ops", allows_superusers=True)
    with app.app_context():
        endpoints.create_endpoint("http://127.0.0.1:9/hook")
    return {"admin": keys.key("ops", superuser=True), "acme": keys.key("acme"), "globex": keys.key("globex")}


def alerts(app):
    """(threshold, period_start, spent_usd) of every budget.threshold_crossed event, in firing order."""
    with app.app_context():
        events = WebhookEvent.select().where(WebhookEvent.type == "budget.threshold_crossed")
        found = [json.loads(event.data) for event in events.order_by(WebhookEvent.created_at)]
    return [(d["threshold"], d["period_start"], Decimal(d["spent_usd"])) for d in found]


def today():
    return dt.datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def at(day_offset, hour=12):
    return today() + dt.timedelta(days=day_offset, hours=hour)


def post(client, key, *records):
    response = client.post("/v1/usage/calls", headers=auth(key), json={"calls": [to_json(r) for r in records]})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def create(client, site, **fields):
    body = {"name": "cap", "amount_usd": "10", "period": "month", **fields}
    response = client.post("/v1/tenants/acme/budgets", headers=auth(site["admin"]), json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_a_batch_fires_every_threshold_it_passes_and_each_once(app, client, site):
    budget = create(client, site, period="day", thresholds=[50, 80, 100])
    start = budget["status"]["period_start"]
    post(client, site["acme"], record("acme", at(0, 0), cost="2"), record("acme", at(0, 0), cost="2"))
    assert alerts(app) == []  # 40%
    second = [record("acme", at(0, 0), cost="7.999999"), record("acme", at(0, 0), cost="0.000001"),
              record("acme", at(0, 0), cost="5", status="error")]  # an error costs nothing
    post(client, site["acme"], *second)
    assert alerts(app) == [(t, start, Decimal(12)) for t in (50, 80, 100)]
    assert post(client, site["acme"], *second)["duplicates"] == 3  # a retry changes nothing
    post(client, site["acme"], record("acme", at(0, 0), cost="30"))
    assert len(alerts(app)) == 3
    with app.app_context():
        [event] = [json.loads(e.data) for e in WebhookEvent.select() if json.loads(e.data)["threshold"] == 80]
    assert event == {"budget_id": budget["id"], "budget_name": "cap", "tenant_id": "acme", "threshold": 80,
                     "amount_usd": "10.000000", "spent_usd": "12.000000", "period_start": start,
                     "period_end": budget["status"]["period_end"]}


def test_exactly_at_a_threshold_fires_and_a_micro_dollar_short_does_not(app, client, site):
    create(client, site, period="day", thresholds=[50], amount_usd="0.000003")
    post(client, site["acme"], record("acme", at(0, 0), cost="0.000001"))  # 33.3%
    assert alerts(app) == []
    post(client, site["acme"], record("acme", at(0, 0), cost="0.000001"))  # 66.7%
    assert [a[0] for a in alerts(app)] == [50]
    budget = create(client, site, period="day", thresholds=[100], amount_usd="0.000003", name="exact")
    assert [a[0] for a in alerts(app)] == [50]  # 2 of 3 micro-dollars: not yet 100%
    post(client, site["acme"], record("acme", at(0, 0), cost="0.000001"))  # exactly 100%
    assert [a[0] for a in alerts(app)] == [50, 100]
    assert budget["status"]["thresholds_crossed"] == []


def test_late_batches_count_in_their_own_period_and_each_period_rearms(app, client, site):
    budget = create(client, site, period="day", thresholds=[100], amount_usd="1")
    days = {offset: periods.containing(at(offset), "day", "UTC") for offset in (-3, -2)}
    post(client, site["acme"], record("acme", at(-3), cost="1"))
    post(client, site["acme"], record("acme", at(-2), cost="0.5"), record("acme", at(-2), cost="0.5"))
    post(client, site["acme"], record("acme", at(-3), cost="4"))  # later, to the earlier day
    assert alerts(app) == [(100, days[-3].local(days[-3].start), Decimal(1)),
                           (100, days[-2].local(days[-2].start), Decimal(1))]
    today = periods.containing(at(0), "day", "UTC")  # counted since the budget's creation
    with app.app_context():  # each counter holds the exact sum of its period
        counters = {row.period_start: row.spent_micro_usd for row in BudgetSpend.select()}
        assert counters == {day.start: spend.spent("acme", day.start, day.end) for day in (*days.values(), today)}
        assert counters == {days[-3].start: 5_000_000, days[-2].start: 1_000_000, today.start: 0}
    assert budget["status"]["spent_usd"] == 0


def test_a_budget_created_or_revised_past_its_thresholds_fires_them_at_once(app, client, site):
    post(client, site["acme"], record("acme", at(0, 0), cost="6"))
    budget = create(client, site, thresholds=[50, 80])
    start = budget["status"]["period_start"]
    assert alerts(app) == [(50, start, Decimal(6))]
    path, admin = f"/v1/budgets/{budget['id']}", auth(site["admin"])
    assert client.patch(path, headers=admin, json={"name": "renamed", "enforce": True}).status_code == 200
    assert len(alerts(app)) == 1  # nothing that changes the numbers' meaning: no new revision
    revised = client.patch(path, headers=admin, json={"amount_usd": "7"}).get_json()
    assert revised["revision"] == 2
    assert alerts(app)[1:] == [(50, start, Decimal(6)), (80, start, Decimal(6))]
    post(client, site["acme"], record("acme", at(0, 0), cost="1"))
    assert len(alerts(app)) == 3  # 100% is not a threshold of this budget


def test_a_rolled_back_batch_fires_and_counts_nothing(app, client, site):
    create(client, site, thresholds=[10])
    rows = [{"call_id": uuid.uuid4(), "tenant": "acme", "operation": "analyze", "timestamp": at(0, 0),
             "call_duration_ms": 5, "model": "m", "input_tokens": 1, "output_tokens": 1,
             "cost_micro_usd": 5_000_000, "status": "ok", "error_class": None}]
    repository = app.extensions["usage_repository"]
    with app.app_context():
        with pytest.raises(RuntimeError), database.atomic():
            repository.add_calls(rows)
            assert BudgetAlert.select().count() == 1  # inside: fired
            raise RuntimeError("the batch fails after its alert was written")
        assert BudgetAlert.select().count() == 0
        assert [row.spent_micro_usd for row in BudgetSpend.select()] == [0]  # as the budget's creation left it
    assert alerts(app) == []
    with app.app_context():
        repository.add_calls(rows)
    assert [a[0] for a in alerts(app)] == [10]


def test_filters_and_tenants_keep_budgets_apart(app, client, site):
    create(client, site, thresholds=[100], amount_usd="1", model="gpt-4o")
    post(client, site["globex"], record("globex", at(0, 0), cost="5", model="gpt-4o"))
    post(client, site["acme"], record("acme", at(0, 0), cost="5", model="gpt-4o-mini"))
    assert alerts(app) == []
    post(client, site["acme"], record("acme", at(0, 0), cost="1", model="gpt-4o"))
    assert [a[0] for a in alerts(app)] == [100]
    assert client.get("/v1/budgets", headers=auth(site["globex"])).get_json() == []


def test_eight_writers_on_three_workers_fire_each_threshold_exactly_once(app, site):
    """160 batches of 0.5 USD from 8 threads through 3 gunicorn workers take
    the spend to 80 USD; eight 50 USD budgets have between them a threshold
    at every 1% from 1% to 160%, so any batch that missed or repeated one,
    overlapping another, shows."""
    client = app.test_client()
    thresholds = {offset: list(range(offset, 161, 8)) for offset in range(1, 9)}
    budgets = {create(client, site, name=f"every 8% from {offset}%", thresholds=every, amount_usd="50")["id"]: every
               for offset, every in thresholds.items()}
    start = client.get("/v1/budgets", headers=auth(site["acme"])).get_json()[0]["status"]["period_start"]

    def send(_):
        body = json.dumps({"calls": [to_json(record("acme", at(0, 0), cost="0.5"))]}).encode()
        request = urllib.request.Request(f"{base}/v1/usage/calls", data=body, method="POST", headers={
            **auth(site["acme"]), "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status

    with gunicorn(app.config["DATABASE_URL"], workers=3) as base:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert set(pool.map(send, range(160))) == {201}
    with app.app_context():
        fired = [json.loads(event.data) for event in WebhookEvent.select()]
    for budget_id, every in budgets.items():
        mine = [event for event in fired if event["budget_id"] == budget_id]
        assert sorted(event["threshold"] for event in mine) == every, budget_id
        for event in mine:
            assert event["period_start"] == start
            reached = Decimal(50) * event["threshold"] / 100  # the batch that crossed it saw it
            assert reached <= Decimal(event["spent_usd"]) < reached + Decimal("0.5")
    with app.app_context():
        assert {counter.spent_micro_usd for counter in BudgetSpend.select()} == {80_000_000}
