"""The call log after `calls prune`: pages and exports whose window reaches
into the pruned calls are a 409 naming the horizon; an open `from` starts at
the horizon (app/retention.py `log_start`).

The horizon and what each window holds are computed here from the records
stored and the rule (the start of the UTC day DAYS days before NOW), never
read from the service.
"""
import datetime as dt
import json

import pytest

from app import pruning
from app.repository import calls_log
from app.retention import BeforeHorizon
from conftest import auth
from data import UTC, record, store
from test_call_log import ALL, OWN, as_listed, newest_first, parse

DAYS = 40
NOW = dt.datetime(2026, 5, 10, 13, 7, tzinfo=UTC)
HORIZON = dt.datetime(2026, 3, 31, tzinfo=UTC)  # NOW's UTC day less 40 days
PRUNED_FROM = dt.datetime(2026, 3, 20, 10, tzinfo=UTC)  # the earliest call stored, pruned
US = dt.timedelta(microseconds=1)
NDJSON, CSV = "application/x-ndjson", "text/csv"


def text(moment):
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def log(app, keys):
    """acme's and globex's calls from PRUNED_FROM on, one exactly at the
    horizon and one a microsecond before it."""
    for tenant in ("acme", "globex"):
        keys.tenant(tenant)
    keys.tenant("ops", allows_superusers=True)
    records = [record("acme", PRUNED_FROM), record("globex", PRUNED_FROM + dt.timedelta(days=5)),
               record("acme", HORIZON - US), record("acme", HORIZON),
               *[record(t, HORIZON + dt.timedelta(hours=7 * i)) for i in range(1, 6) for t in ("acme", "globex")]]
    store(app, records)
    return {"records": records, "acme": keys.key("acme"), "admin": keys.key("ops", superuser=True)}


def prune(app):
    with app.app_context():
        plan = pruning.plan(DAYS, NOW)
        assert plan.pruned.horizon == HORIZON and plan.pruned.pruned_from == PRUNED_FROM
        return pruning.prune(plan)


def kept(records, lo=None, hi=None, tenant=None):
    """The records in [lo, hi) (open ends None) at or after the horizon, as listed."""
    return newest_first(records, lambda r: r["timestamp"] >= HORIZON and (lo is None or r["timestamp"] >= lo)
                        and (hi is None or r["timestamp"] < hi) and tenant in (None, r["tenant_id"]))


def assert_refused(response, lo, hi):
    """409 in the error shape, naming the horizon, the part of the window pruned and the way out."""
    assert response.status_code == 409, response.data
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert (body["code"], body["status"]) == (409, "Conflict") and body["request_id"]
    assert body["message"] == (
        f"Calls before {HORIZON.isoformat()} (the retention horizon, RETENTION_DAYS) were pruned, and this "
        f"answer needs those from {lo.isoformat()} to {hi.isoformat()}: the call log no longer holds them (the "
        "statistics keep their daily and monthly rollups). Ask for a window starting at or after the horizon, "
        "or leave `from` out: the call log then starts at the horizon.")


@pytest.mark.parametrize("path, key, tenant", [(OWN, "acme", "acme"), (ALL, "admin", None)])
def test_pages_refuse_windows_reaching_into_the_pruned_calls(app, client, log, path, key, tenant):
    assert prune(app) == 3
    headers = auth(log[key])

    def page(**params):
        return client.get(path, headers=headers, query_string={"limit": 1000, **params})

    everything = kept(log["records"], tenant=tenant)
    assert everything[-1] == as_listed(log["records"][3])  # the call exactly at the horizon
    assert parse(page())["calls"] == everything  # open: from the horizon
    assert parse(page(**{"from": text(HORIZON)}))["calls"] == everything
    assert_refused(page(**{"from": text(HORIZON - US)}), HORIZON - US, HORIZON)
    assert_refused(page(**{"from": "2026-01-01T00:00:00Z", "to": text(HORIZON + US)}), PRUNED_FROM, HORIZON)
    end = HORIZON + dt.timedelta(hours=15)
    assert parse(page(to=text(end)))["calls"] == kept(log["records"], hi=end, tenant=tenant)
    # A window ending at or before the horizon keeps its open start, and so the rule.
    assert_refused(page(to=text(HORIZON)), PRUNED_FROM, HORIZON)
    assert_refused(page(to=text(PRUNED_FROM + US)), PRUNED_FROM, PRUNED_FROM + US)
    assert parse(page(to=text(PRUNED_FROM)))["calls"] == []  # nothing was pruned before it
    assert parse(page(**{"from": "2026-01-01T00:00:00Z", "to": text(PRUNED_FROM)}))["calls"] == []


def test_without_a_prune_an_open_from_reaches_the_first_call(app, client, log):
    body = parse(client.get(ALL, headers=auth(log["admin"]), query_string={"limit": 1000}))
    assert body["calls"] == newest_first(log["records"])


def test_a_prune_between_two_pages_refuses_the_next_page_of_a_window_it_reached(app, client, log):
    headers = auth(log["admin"])
    params = {"from": text(PRUNED_FROM), "limit": 4}
    first = parse(client.get(ALL, headers=headers, query_string=params))
    assert first["calls"] == newest_first(log["records"])[:4]
    prune(app)
    assert_refused(client.get(ALL, headers=headers, query_string={**params, "cursor": first["next_cursor"]}),
                   PRUNED_FROM, HORIZON)


def test_a_prune_between_two_pages_of_an_open_listing_moves_its_start_to_the_horizon(app, client, log):
    """As for calls erased meanwhile: the next page goes on after the part read,
    down to the calls that are left."""
    headers = auth(log["admin"])
    first = parse(client.get(ALL, headers=headers, query_string={"limit": 4}))
    prune(app)
    rest = parse(client.get(ALL, headers=headers, query_string={"limit": 1000, "cursor": first["next_cursor"]}))
    assert first["calls"] + rest["calls"] == kept(log["records"])


@pytest.mark.parametrize("accept", [NDJSON, CSV])
def test_exports_follow_the_same_rule_before_the_answer_starts(app, client, log, accept):
    prune(app)
    headers = {**auth(log["admin"]), "Accept": accept}
    response = client.get(ALL, headers=headers)
    assert response.status_code == 200 and response.mimetype == accept
    extension = "ndjson" if accept == NDJSON else "csv"
    # The file says where it starts: the horizon.
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="calls_all_20260331T000000Z_open.{extension}"')
    body = response.get_data(as_text=True).splitlines()
    if accept == NDJSON:
        assert [json.loads(line)["call_id"] for line in body] == [c["call_id"] for c in kept(log["records"])]
    else:
        assert [line.split(",")[1] for line in body[1:]] == [c["call_id"] for c in kept(log["records"])]
    assert_refused(client.get(ALL, headers=headers, query_string={"from": text(HORIZON - US)}), HORIZON - US, HORIZON)
    assert_refused(client.get(OWN, headers={**auth(log["acme"]), "Accept": accept},
                              query_string={"to": text(HORIZON)}), PRUNED_FROM, HORIZON)


def test_an_export_a_prune_reaches_while_it_streams_is_cut_off(app, client, log, monkeypatch):
    """The horizon is recorded before any call is deleted; the export checks it
    after each chunk, so it stops rather than end without the pruned calls."""
    monkeypatch.setattr(calls_log, "CHUNK_ROWS", 2)
    response = client.get(ALL, headers={**auth(log["admin"]), "Accept": NDJSON},
                          query_string={"from": text(PRUNED_FROM)}, buffered=False)
    assert response.status_code == 200
    chunks = iter(response.response)
    received = [next(chunks), next(chunks)]
    with app.app_context():
        pruning.plan(DAYS, NOW)  # recorded; nothing deleted yet
    with pytest.raises(BeforeHorizon):
        received += list(chunks)
    response.close()
    assert len(b"".join(received).splitlines()) < len(log["records"])
