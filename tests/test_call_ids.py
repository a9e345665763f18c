"""Call ids are never reused, so the call log's high-water id holds after deletes.

The call log (app/repository/calls_log.py) lists, page after page, only
the calls with an id at most the largest id stored when the first page was
read. That holds only if a call stored later never gets an id at or below
it. PostgreSQL's sequences never go back; SQLite's INTEGER PRIMARY KEY
without AUTOINCREMENT gives a new row the largest id stored plus one, so
once an erasure or a prune deleted the newest ids, a call recorded later
took one of them and appeared in a listing begun before it. Migration
014 makes llm_call's id AUTOINCREMENT on SQLite (nothing on PostgreSQL).
"""
import datetime as dt
import sqlite3

import pytest

from app import erasure, pruning
from app.db import database
from app.migrate import _router, upgrade
from app.models import LlmCall
from conftest import auth, roll_back_through
from data import UTC, record, store
from test_call_log import as_listed, newest_first, parse

T0 = dt.datetime(2026, 11, 1, tzinfo=UTC)
OWN = "/v1/usage/calls"
MIGRATION = "014_call_ids_never_reused"


@pytest.fixture
def tenants(app, keys):
    for tenant_id in ("acme", "globex", "ops"):
        keys.tenant(tenant_id)
    return {"acme": keys.key("acme")}


def ids(app):
    with app.app_context():
        return sorted(i for (i,) in LlmCall.select(LlmCall.id).tuples())


def test_a_call_recorded_after_the_newest_ids_were_erased_stays_out_of_a_listing_begun_before(app, client, tenants):
    acme = [record("acme", T0 + dt.timedelta(minutes=i)) for i in range(6)]
    store(app, acme)
    store(app, [record("globex", T0 + dt.timedelta(minutes=i)) for i in range(3)])  # the newest ids
    largest = ids(app)[-1]
    first = parse(client.get(OWN, headers=auth(tenants["acme"]), query_string={"limit": 2}))
    assert first["calls"] == newest_first(acme)[:2]

    with app.app_context():
        erasure.erase("globex")  # deletes the largest ids
    late = record("acme", T0 - dt.timedelta(hours=1))  # in the part not yet read
    store(app, [late])

    rest, cursor = [], first["next_cursor"]
    while cursor:
        page = parse(client.get(OWN, headers=auth(tenants["acme"]), query_string={"limit": 2, "cursor": cursor}))
        rest += page["calls"]
        cursor = page["next_cursor"]
    assert first["calls"] + rest == newest_first(acme)
    assert as_listed(late) not in rest
    assert ids(app)[-1] > largest  # a new id, not a reused one
    # A new listing has it.
    assert parse(client.get(OWN, headers=auth(tenants["acme"])))["calls"][-1] == as_listed(late)


def test_a_call_recorded_after_the_newest_ids_were_pruned_gets_a_new_id(app, tenants):
    """Pruning deletes the oldest timestamps, which may hold the largest ids."""
    old = T0 - dt.timedelta(days=400)
    store(app, [record("acme", T0)])
    store(app, [record("acme", old + dt.timedelta(minutes=i)) for i in range(3)])  # the newest ids
    largest = ids(app)[-1]
    with app.app_context():
        plan = pruning.plan(40, T0 + dt.timedelta(days=1))
        assert pruning.prune(plan) == 3
    store(app, [record("acme", T0 + dt.timedelta(hours=1))])
    assert ids(app)[-1] > largest


def sqlite_schema(path):
    with sqlite3.connect(path) as conn:
        return sorted(conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"
                                   " WHERE name NOT IN ('sqlite_sequence', 'migratehistory')"))


def all_calls(app):
    with app.app_context():
        return list(LlmCall.select().order_by(LlmCall.id).tuples())


def test_migration_014_keeps_every_call_and_index_and_rolls_back_and_forth(app, tenants, database_url):
    """On an existing database with calls (some deleted at the top, so the
    next id is past them only thanks to AUTOINCREMENT's memory from then on)."""
    store(app, [record(t, T0 + dt.timedelta(minutes=i)) for i in range(5) for t in ("acme", "globex")])
    sqlite = database_url.startswith("sqlite")
    path = database_url.removeprefix("sqlite:///")
    with app.app_context():
        roll_back_through(database.obj, MIGRATION)
    before, calls = (sqlite_schema(path) if sqlite else None), all_calls(app)
    with app.app_context():  # 014 alone (later migrations, rolled back too, change other tables)
        assert _router(database.obj).run(MIGRATION) == [MIGRATION]
    assert all_calls(app) == calls
    if sqlite:
        after = sqlite_schema(path)
        table = [row for row in after if row[1] == "llm_call"]
        assert 'PRIMARY KEY AUTOINCREMENT' in table[0][3]
        # Everything else, the three indexes of llm_call among them, as it was.
        assert [row for row in after if row[1] != "llm_call"] == [row for row in before if row[1] != "llm_call"]
        assert {row[1] for row in after if row[0] == "index" and row[2] == "llm_call"} == {
            "llmcall_tenant_id_call_id", "llm_call_tenant_time_stats", "llm_call_time_stats"}
        assert table[0][3].replace(" AUTOINCREMENT", "") == [r for r in before if r[1] == "llm_call"][0][3]
    # The largest id deleted is not given again, from the migration on.
    with app.app_context():
        upgrade(database.obj)  # any later migrations, which today's code needs to store calls
        largest = calls[-1][0]
        LlmCall.delete().where(LlmCall.id == largest).execute()
    store(app, [record("acme", T0)])
    assert ids(app)[-1] > largest
    with app.app_context():
        roll_back_through(database.obj, MIGRATION)
    if sqlite:
        assert sqlite_schema(path) == before
    assert [call[1:] for call in all_calls(app)][:len(calls) - 1] == [call[1:] for call in calls[:-1]]
    with app.app_context():
        assert upgrade(database.obj)[0] == MIGRATION
