"""Rollups and `percentiles=approximate`.

Every number but the percentiles must be what the exact path gives, and
each percentile within 1% of the exact one. Expected values are computed
here from the records the test stored (tests/expected.py), never by the
service; the cells themselves are checked against sums computed here too.
"""
import datetime as dt
import json
import random
import struct
import threading
import urllib.error
import urllib.request
from collections import Counter
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from peewee import IntegrityError

from app import sketch, statistics
from app.db import database
from app.models import LlmCall, UsageRollup
from app.records import MAX_INT, CallRecordSchema, to_row
from app.migrate import _router, upgrade
from app.repository import rollups
from app.repository.rollups.cells import KEY_COLUMNS, METRIC_SKETCHES, NUMBERS
from app.repository.rollups.keep import COMPACT_AFTER
from app.sketch import SketchSet
from app.statistics import PERCENTILES
from conftest import Keys, auth, build_app, gunicorn, roll_back_through
from data import UTC, random_records, record, seeded, store, to_json
from expected import expected_stats, group_stats, in_window
from test_series import check_calendar, local_key, utc
from test_usage_stats import count_statements

START = dt.datetime(2026, 1, 20, 7, 13, 5, tzinfo=UTC)
END = dt.datetime(2026, 4, 9, 16, 41, 59, tzinfo=UTC)
METRICS = ("call_duration", "input_tokens", "output_tokens")


def adversarial_records(rng):
    """Distributions that break careless sketches: heavy tails, many equal
    values, zeros, a tenant with one record, values at bin edges."""
    records = random_records(rng, ["t-a", "t-b", "t-c"], 700, START, END)
    span = int((END - START).total_seconds())

    def at():
        return START + dt.timedelta(seconds=rng.randrange(span))

    for _ in range(150):  # heavy tail: Pareto durations up to 2**31 - 1
        records.append(record("t-heavy", at(), duration=min(int(rng.paretovariate(0.6)), 2**31 - 1),
                              input_tokens=min(int(rng.paretovariate(0.9) * 50), 2**31 - 1),
                              output_tokens=rng.choice([0, 1, 99, 100, 101, 2**31 - 1])))
    for _ in range(120):  # a handful of repeated values, zeros among them
        records.append(record("t-equal", at(), duration=rng.choice([0, 7, 7, 7, 1000]),
                              input_tokens=rng.choice([0, 0, 5]), output_tokens=0))
    records.append(record("t-single", at(), duration=123_457, input_tokens=98_765, output_tokens=3))
    return records


@pytest.fixture
def stored(app, keys):
    records = adversarial_records(seeded(10))
    for tenant_id in sorted({r["tenant_id"] for r in records}):
        keys.tenant(tenant_id)
    store(app, records)
    return records


def assert_close(actual, expected):
    """Every number exact but the percentiles, which are within 1%, and
    within the exact minimum and maximum, as the exact ones are."""
    for key in ("tenant_id", "total_calls", "failed_calls", "total_cost_usd", "by_operation", "by_model"):
        if key in expected:
            assert actual[key] == expected[key], key
    for metric in METRICS:
        for stat, value in expected[metric].items():
            got = float(actual[metric][stat])
            if stat.startswith("p"):
                assert abs(got - value) <= 0.01 * value + 1e-9, (metric, stat, got, value)
                assert expected[metric]["min"] <= got <= expected[metric]["max"], (metric, stat, got)
            else:
                assert got == pytest.approx(value, rel=1e-12, abs=1e-12), (metric, stat)


def get(client, path, key, **params):
    response = client.get(path, headers=auth(key), query_string=params)
    assert response.status_code == 200, response.data
    return json.loads(response.data, parse_float=Decimal)


def random_windows(rng):
    """Windows at odd seconds, on hour, day and month boundaries, and open ones."""
    span = int((END - START).total_seconds())
    windows = [(None, None), (None, dt.datetime(2026, 3, 1, tzinfo=UTC)),
               (dt.datetime(2026, 2, 1, tzinfo=UTC), dt.datetime(2026, 4, 1, tzinfo=UTC)),
               (dt.datetime(2026, 2, 3, 5, tzinfo=UTC), None)]
    for _ in range(8):
        a, b = sorted(rng.sample(range(span), 2))
        windows.append((START + dt.timedelta(seconds=a), START + dt.timedelta(seconds=b)))
    return windows


def window_params(start, end):
    return {name: moment.isoformat() for name, moment in (("from", start), ("to", end)) if moment}


def test_approximate_usage_is_exact_but_for_percentiles_within_one_percent(app, client, keys, stored):
    keys.tenant("ops", allows_superusers=True)
    superuser = keys.key("ops", superuser=True)
    tenant_keys = {t: keys.key(t) for t in ("t-a", "t-heavy", "t-equal", "t-single")}
    for start, end in random_windows(seeded(11)):
        params = {**window_params(start, end), "percentiles": "approximate"}
        for tenant_id, key in tenant_keys.items():
            body = get(client, "/v1/usage", key, **params)
            assert body["percentiles"] == "approximate"
            assert_close(body, expected_stats(stored, tenant_id, start, end))
        body = get(client, "/v1/usage/all", superuser, **params)
        tenants = sorted({r["tenant_id"] for r in stored if in_window(r, start, end)})
        assert [t["tenant_id"] for t in body["tenants"]] == tenants
        for stats in body["tenants"]:
            assert_close(stats, expected_stats(stored, stats["tenant_id"], start, end))
        assert_close(body["total"], expected_stats(stored, None, start, end))


def test_a_single_call_has_its_own_values_as_approximate_percentiles(app, client, keys, stored):
    """t-single's one call: the sketches put 123,457 ms in a bin whose value
    is up to 1% off, and the exact minimum and maximum bring it back."""
    body = get(client, "/v1/usage", keys.key("t-single"), percentiles="approximate")
    for metric, value in (("call_duration", 123_457), ("input_tokens", 98_765), ("output_tokens", 3)):
        assert {body[metric][f"p{pct}"] for pct in (5, 50, 95, 99)} == {value}, metric


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/St_Johns", "Asia/Kolkata", "Asia/Kathmandu"])
def test_approximate_series_in_any_zone(app, client, keys, stored, zone):
    keys.tenant("ops", allows_superusers=True)
    superuser = keys.key("ops", superuser=True)
    tz = ZoneInfo(zone)
    windows = [(dt.datetime(2026, 3, 27, 22, 17, tzinfo=UTC), dt.datetime(2026, 3, 31, 3, 2, tzinfo=UTC), "hour"),
               (START, END, "day"), (START, END, "week"), (START, END, "month")]
    for start, end, unit in windows:
        body = get(client, "/v1/usage/all/series", superuser, **window_params(start, end), bucket=unit,
                   tz=zone, group_by="model", percentiles="approximate")
        check_calendar(body["buckets"], start, end, unit, tz)
        for bucket in body["buckets"]:
            lo, hi = utc(bucket["start"]), utc(bucket["end"])
            chosen = [r for r in stored if in_window(r, lo, hi)]
            models = sorted({r["model"] for r in chosen})
            assert [g["model"] for g in bucket["groups"]] == models
            for group in bucket["groups"]:
                assert_close(group, group_stats([r for r in chosen if r["model"] == group["model"]]))
            assert all(local_key(r["timestamp"], unit, tz) == local_key(lo, unit, tz) for r in chosen)


@pytest.mark.parametrize("group_by", ["tenant_id", "status"])
def test_approximate_monthly_series_by_tenant_or_status(app, client, keys, stored, group_by):
    """UTC months grouped by at most tenant and status: the whole months'
    percentiles come from tenant_month cells, for several buckets at once."""
    keys.tenant("ops", allows_superusers=True)
    superuser = keys.key("ops", superuser=True)
    body = get(client, "/v1/usage/all/series", superuser, **window_params(START, END), bucket="month",
               tz="UTC", group_by=group_by, percentiles="approximate")
    whole_months = 0
    for bucket in body["buckets"]:
        lo, hi = utc(bucket["start"]), utc(bucket["end"])
        whole_months += lo.day == 1 and lo.hour == 0 and hi.day == 1 and START <= lo and hi <= END
        chosen = [r for r in stored if in_window(r, lo, hi)]
        assert [g[group_by] for g in bucket["groups"]] == sorted({r[group_by] for r in chosen})
        for group in bucket["groups"]:
            assert_close(group, group_stats([r for r in chosen if r[group_by] == group[group_by]]))
    assert whole_months >= 2


def test_approximate_series_by_error_class(app, client, keys, stored):
    """Grouped by error_class, null (ok calls) first: cells store '' for it
    (PostgreSQL once answered 500 here, issue 11's dashboard found it)."""
    keys.tenant("ops", allows_superusers=True)
    superuser = keys.key("ops", superuser=True)
    body = get(client, "/v1/usage/all/series", superuser, **window_params(START, END), bucket="month",
               group_by="status,error_class", percentiles="approximate")
    for bucket in body["buckets"]:
        chosen = [r for r in stored if in_window(r, utc(bucket["start"]), utc(bucket["end"]))]
        keys_found = sorted({(r["status"], r.get("error_class")) for r in chosen},
                            key=lambda k: (k[0], k[1] is not None, k[1] or ""))
        assert [(g["status"], g["error_class"]) for g in bucket["groups"]] == keys_found
        for group in bucket["groups"]:
            assert_close(group, group_stats([r for r in chosen if r["status"] == group["status"]
                                             and r.get("error_class") == group["error_class"]]))


@pytest.mark.parametrize("unit, zone", [("hour", "UTC"), ("day", "Europe/Berlin"), ("day", "Asia/Kolkata")])
def test_windows_without_a_whole_utc_day_are_answered_exactly(app, client, keys, stored, unit, zone):
    """No bucket holds a whole cell: approximate answers with the exact path
    (faster there), so its percentiles are the exact ones, not 1% away."""
    keys.tenant("ops", allows_superusers=True)
    superuser = keys.key("ops", superuser=True)
    start, end = dt.datetime(2026, 3, 2, 5, 17, tzinfo=UTC), dt.datetime(2026, 3, 9, 19, 2, tzinfo=UTC)
    answers = [get(client, "/v1/usage/all/series", superuser, **window_params(start, end), bucket=unit, tz=zone,
                   group_by="tenant_id", percentiles=precision) for precision in ("exact", "approximate")]
    assert [a.pop("percentiles") for a in answers] == ["exact", "approximate"]
    assert answers[0] == answers[1]
    assert any(group["call_duration"]["p50"] > 99 for b in answers[0]["buckets"] for group in b["groups"])


def test_approximate_series_runs_a_fixed_number_of_statements(app, client, keys, stored):
    keys.tenant("ops", allows_superusers=True)
    superuser = keys.key("ops", superuser=True)
    get(client, "/v1/usage/all", superuser)  # refreshes last_used_at, which then waits a minute
    for unit, tz in (("day", "UTC"), ("hour", "Asia/Kolkata"), ("week", "America/St_Johns")):
        count, _ = count_statements(client, "/v1/usage/all/series", superuser, bucket=unit, tz=tz,
                                    group_by="tenant_id,status", percentiles="approximate",
                                    **window_params(START, END))
        # The key lookup, the rollups' state, then at most eight: totals and
        # sketches of the cells of each grain, totals and values of raw edges.
        assert count <= 10, (unit, tz, count)


def expected_cells(records, grain):
    """{(cell start, tenant, operation, model, status, error_class): (calls, cost, duration sum)}.

    A tenant_month (tenant_day) cell is a tenant's month (day) per status, the rest ''.
    A failed_day cell holds the failed calls of a (tenant, operation, model) day,
    every error class together."""
    cells = {}
    for r in records:
        if grain == "failed_day" and r["status"] != "error":
            continue
        t = r["timestamp"].replace(hour=0, minute=0, second=0, microsecond=0)
        if grain in ("month", "tenant_month"):
            t = t.replace(day=1)
        if grain in ("tenant_month", "tenant_day"):
            key = (t, r["tenant_id"], "", "", r["status"], "")
        elif grain == "model_day":
            key = (t, "", "", r["model"], r["status"], "")
        elif grain == "quarter":  # a model_day cell's quarter hour (its `quarters` records)
            key = (t, r["model"], r["status"], r["timestamp"].hour * 4 + r["timestamp"].minute // 15)
        elif grain == "failed_day":
            key = (t, r["tenant_id"], r["operation"], r["model"], "error", "")
        else:
            key = (t, r["tenant_id"], r["operation"], r["model"], r["status"], r.get("error_class") or "")
        calls, cost, duration = cells.get(key, (0, 0, 0))
        cells[key] = (calls + 1, cost + int(r["cost_usd"] * 1_000_000), duration + r["call_duration_ms"])
    return cells


def stored_cells(app, grain):
    with app.app_context():
        query = (UsageRollup
                 .select(UsageRollup.cell_start, UsageRollup.tenant_id, UsageRollup.operation,
                         UsageRollup.model, UsageRollup.status, UsageRollup.error_class,
                         UsageRollup.calls, UsageRollup.cost_micro_usd, UsageRollup.call_duration_sum)
                 .where(UsageRollup.grain == grain)
                 .tuples())
        return {tuple(row[:6]): tuple(row[6:]) for row in query}


def assert_cells_match(app, records, horizon=None):
    """The cells of every grain hold `records`; month and tenant_month cells
    only those of months that have ended (the current UTC month is not
    sealed yet), model_day cells only those from the retention `horizon` on
    (pruning deletes the others)."""
    kept = [r for r in records if horizon is None or r["timestamp"] >= horizon]
    this_month = dt.datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    sealed = [r for r in records if r["timestamp"] < this_month]
    for grain in ("day", "tenant_day", "failed_day"):
        assert stored_cells(app, grain) == expected_cells(records, grain), grain
    for grain in ("month", "tenant_month"):
        assert stored_cells(app, grain) == expected_cells(sealed, grain), grain
    assert stored_cells(app, "model_day") == expected_cells(kept, "model_day")
    assert stored_quarters(app) == expected_cells(kept, "quarter")
    with app.app_context():  # and no cell of another grain (hourly cells are gone since 007)
        assert {grain for (grain,) in UsageRollup.select(UsageRollup.grain).distinct().tuples()} <= {
            "day", "month", "tenant_month", "tenant_day", "model_day", "failed_day"}


def stored_quarters(app):
    """{(day, model, status, quarter): (calls, cost, duration sum)} of the
    model_day cells' `quarters`: packed records of a quarter (uint8), calls
    (uint32), cost (int64), each metric's sum (int64), then each metric's
    minimum and each one's maximum (uint32); several pieces of one quarter
    possibly."""
    found = {}
    with app.app_context():
        for day, model, status, blob in (UsageRollup
                                         .select(UsageRollup.cell_start, UsageRollup.model, UsageRollup.status,
                                                 UsageRollup.quarters)
                                         .where(UsageRollup.grain == "model_day").tuples()):
            for quarter, calls, cost, duration, *_ in struct.iter_unpack("<BIq3q3I3I", bytes(blob)):
                before = found.get((day, model, status, quarter), (0, 0, 0))
                found[day, model, status, quarter] = (before[0] + calls, before[1] + cost, before[2] + duration)
    return found


def test_duplicates_change_no_cell(app, stored):
    assert_cells_match(app, stored)
    added = store(app, stored[:300])
    assert (added.created, added.duplicates) == (0, 300)
    assert_cells_match(app, stored)


def test_a_cell_written_by_many_batches_counts_each_call_once(app, runner, keys):
    """Each batch appends its piece to a cell's sketches, and the batch that
    appends the COMPACT_AFTER-th merges them into one: however many batches
    wrote a cell, its sketch counts every call once. Durations below 99 have
    a bin each, numbered as the value (app/sketch.py), so the expected
    sketch is the durations counted."""
    keys.tenant("t-a")
    moment = dt.datetime(2026, 5, 3, 10, 7, tzinfo=UTC)
    durations = [(i * 37) % 97 for i in range(2 * COMPACT_AFTER + 3)]
    for i, duration in enumerate(durations):  # one call a batch, all in one cell of each grain
        store(app, [record("t-a", moment + dt.timedelta(seconds=i), duration=duration)])
        with app.app_context():
            cells = list(UsageRollup.select(UsageRollup.grain, UsageRollup.sketch_pieces,
                                            UsageRollup.call_duration_sketch, UsageRollup.quarter_sketches))
        assert len(cells) == 5  # day, month, tenant_month, tenant_day, model_day
        for cell in cells:  # 1, 2, ..., COMPACT_AFTER - 1, merged at the next: 1, 2, ...
            assert cell.sketch_pieces == 1 + i % (COMPACT_AFTER - 1)
            counted = Counter()
            for bin_number, count in struct.iter_unpack("<HH", bytes(cell.call_duration_sketch)):
                counted[bin_number] += count
            assert counted == Counter(durations[:i + 1])
            # model_day: the same per quarter hour, (quarter, metric, bin, count) entries; 10:07 is quarter 40
            in_quarters = Counter()
            for quarter, metric, bin_number, count in struct.iter_unpack("<BBHH", bytes(cell.quarter_sketches)):
                assert quarter == 40
                if metric == 0:
                    in_quarters[bin_number] += count
            assert in_quarters == (Counter(durations[:i + 1]) if cell.grain == "model_day" else Counter())
    result = runner.invoke(args=["rollups", "verify"])
    assert result.exit_code == 0, result.output


def test_a_count_above_65535_is_stored_as_several_pairs_of_its_bin():
    """A bin's count is a uint16 in the stored pairs (app/sketch.py): 70,000
    zeros and 3 sevens become (0, 65535), (0, 4465), (7, 3), which read back
    as 70,003 values with the sevens at the top."""
    sketches = SketchSet()
    sketches.add_values([[0] * 70_003], [0] * 70_000 + [7] * 3)
    encoded = sketches.encoded()
    assert list(struct.iter_unpack("<HH", encoded[0])) == [(0, 65_535), (0, 4_465), (7, 3)]
    read = SketchSet()
    read.add_sketches([[0]], [encoded[0]])
    groups, sizes, ranks, values = read.at_ranks(lambda sizes: [sizes - 4, sizes - 3, sizes - 1])
    assert (groups.tolist(), sizes.tolist(), ranks.tolist(), values.tolist()) == (
        [0], [70_003], [[69_999, 70_000, 70_002]], [[0, 7, 7]])


def test_sketches_read_as_stored_or_merged_give_each_groups_values_at_ranks():
    """Sketches holding one group each in bin order are read as they are
    (sketch.added_up_where_needed); any group in two pieces whose bins
    overlap, or in two runs, or with a count split into two pairs, is merged
    first, alone or among groups read as they are.
    Either way each group's value at rank r is the representative of the
    bin of its r-th smallest value, computed here from the sorted values."""
    rng = random.Random(11)
    values = {group: [rng.choice([rng.randint(0, 200), rng.randint(0, MAX_INT)]) for _ in range(rng.randint(1, 60))]
              for group in range(40)}
    values[40] = [3] * 70_000 + [9, 12]  # a count above 65,535: two pairs of one bin

    def encoded(group_values):
        one = SketchSet()
        one.add_values([[0] * len(group_values)], group_values)
        return one.encoded()[0]

    def ranks(sizes):
        return [np.zeros_like(sizes), sizes // 2, sizes - 1]

    def expected(groups):
        found = {}
        for group in groups:
            ordered = sorted(values[group])
            found[group] = (len(ordered), [int(sketch.REPRESENTATIVES[sketch.bin_of(np.array([ordered[r]]))[0]])
                                           for r in (0, len(ordered) // 2, len(ordered) - 1)])
        return found

    def read(groups, sketches):
        stored = SketchSet()
        stored.add_sketches([groups], sketches)
        found, sizes, _, at = stored.at_ranks(ranks)
        return {g: (n, v) for g, n, v in zip(found.tolist(), sizes.tolist(), at.tolist())}

    shuffled = rng.sample(range(40), 40)
    assert read(shuffled, [encoded(values[g]) for g in shuffled]) == expected(shuffled)  # as stored
    halves = {g: (values[g][::2], values[g][1::2]) for g in range(40)}
    two = [g for g in range(40) if halves[g][1]]  # groups of two values or more, in two pieces
    assert read([g for g in two for _ in (0, 1)], [encoded(half) for g in two for half in halves[g]]) == expected(two)
    assert read(two + two, [encoded(halves[g][0]) for g in two] + [encoded(halves[g][1]) for g in two]) \
        == expected(two)  # each group in two runs
    assert read([40, 0], [encoded(values[40]), encoded(values[0])]) == expected([40, 0])
    # Both in one read: groups as stored among groups in two pieces and in two runs.
    split = [g for g in two if g % 3]
    whole = [g for g in range(40) if g not in split]
    pieces = ([(g, encoded(values[g])) for g in whole[:10]] + [(g, encoded(half)) for g in split for half in halves[g]]
              + [(g, encoded(values[g])) for g in whole[10:]] + [(split[0], encoded(values[split[0]]))])
    assert read(*map(list, zip(*pieces))) == {**expected(range(40)), split[0]: (
        2 * len(values[split[0]]), expected([split[0]])[split[0]][1])}
    taken_out = SketchSet()  # counts that add up to nothing leave no pair, even in one run of rising bins
    taken_out.add_pairs([0, 0, 1], [4, 7, 4], [2, 0, 1])
    assert taken_out.encoded() == {0: struct.pack("<HH", 4, 2), 1: struct.pack("<HH", 4, 1)}


def test_percentiles_of_many_groups_at_once_are_each_groups_own():
    """Approximate answers work out every group's percentiles together
    (statistics.percentiles_of_groups): each is the linear interpolation
    between the values at ranks k and k + 1, k + f = (n - 1) * p / 100,
    rounded once to the nearest float, here computed exactly with Fraction."""
    rng = random.Random(7)
    sizes = [1, 2, 3, 100, 101, 7_919] + [rng.randint(1, 10**6) for _ in range(300)]
    values = [sorted(rng.choice([rng.randint(0, 10), rng.randint(0, MAX_INT)]) for _ in range(8))
              for _ in sizes]
    expected = []
    for n, row in zip(sizes, values):
        group = {}
        for i, pct in enumerate(PERCENTILES):
            low, high = row[2 * i], row[2 * i + 1]
            f = Fraction((n - 1) * pct, 100) - (n - 1) * pct // 100
            group[pct] = float(low + (high - low) * f)
        expected.append(group)
    assert statistics.percentiles_of_groups(np.array(sizes), np.array(values)) == expected
    assert statistics.percentiles_of_groups(np.zeros(0, dtype=np.int64), np.zeros((0, 8), dtype=np.int64)) == []


def insert_bypassing_rollups(app, records, with_cells=False):
    """Calls stored as before the rollups existed (or restored from a dump);
    `with_cells`: and their cells, as the code before budgets (migration 010) stored them
    (no tenant_day cells before migration 016)."""
    schema = CallRecordSchema()
    rows = [to_row(schema.load(to_json(r)), r["tenant_id"]) for r in records]
    with app.app_context(), database.atomic():
        LlmCall.insert_many(rows).execute()
        if with_cells:
            table = rollups.cells_of(rows, ("day", "month", "tenant_month"))
            columns = KEY_COLUMNS + NUMBERS + METRIC_SKETCHES  # no quarter hours before migration 016
            for key, *values in zip(table.keys, *table.numbers, *table.sketches[:len(METRIC_SKETCHES)]):
                database.execute_sql(
                    f"INSERT INTO usage_rollup ({', '.join(columns)}) VALUES ({', '.join([database.param] * len(columns))})",
                    [key[0], UsageRollup.cell_start.db_value(key[1]), *key[2:], *values])


def test_rebuild_recomputes_cells_and_verify_tells(app, runner, keys, stored):
    keys.tenant("t-late")
    later = random_records(seeded(12), ["t-a", "t-late"], 200, START, END)
    insert_bypassing_rollups(app, later)
    result = runner.invoke(args=["rollups", "verify"])
    assert result.exit_code == 1
    assert "differ from the calls" in result.output and "rollups rebuild" in result.output
    result = runner.invoke(args=["rollups", "rebuild"])
    assert result.exit_code == 0, result.output
    assert "Rebuilt" in result.output
    assert_cells_match(app, stored + later)
    result = runner.invoke(args=["rollups", "verify"])
    assert result.exit_code == 0, result.output
    assert "Rollups match the calls (4 month(s))" in result.output
    with app.app_context():  # a damaged cell is found
        database.execute_sql("UPDATE usage_rollup SET calls = calls + 1 WHERE id = (SELECT MIN(id) FROM usage_rollup)")
    result = runner.invoke(args=["rollups", "verify"])
    assert result.exit_code == 1 and "numbers" in result.output


def post(base, key, body):
    """POST a batch, retrying a 503 (a busy database) as a client would."""
    request = urllib.request.Request(base + "/v1/usage/calls", data=json.dumps(body).encode(),
                                     headers={**auth(key), "Content-Type": "application/json"})
    for _ in range(20):
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            if error.code != 503:
                raise
    raise AssertionError("still 503 after 20 tries")


def test_concurrent_overlapping_retried_batches_keep_cells_exact(app, runner, keys):
    """Several workers store overlapping batches at once, each sent twice:
    the cells equal sums over the distinct calls, and `rollups verify` agrees."""
    keys.tenant("ops", allows_superusers=True)
    keys.tenant("t-a")
    keys.tenant("t-b")
    superuser = keys.key("ops", superuser=True)
    # Recent calls in few cells, so that batches contend for the same ones.
    now = dt.datetime(2026, 5, 3, 10, 0, tzinfo=UTC)
    records = random_records(seeded(13), ["t-a", "t-b"], 600, now, now + dt.timedelta(hours=3))
    batches = [records[i:i + 150] for i in range(0, 600, 75)]  # each record in two batches
    errors = []

    def send(batch):
        try:
            post(base, superuser, {"calls": [to_json(r) for r in batch]})
        except Exception as error:  # reported below
            errors.append(error)

    with gunicorn(app.config["DATABASE_URL"], workers=4, SQLITE_BUSY_TIMEOUT="10000") as base:
        threads = [threading.Thread(target=send, args=(batch,)) for batch in batches + batches[::-1]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors
    with app.app_context():
        assert LlmCall.select().count() == len(records)
    assert_cells_match(app, records)
    result = runner.invoke(args=["rollups", "verify"])
    assert result.exit_code == 0, result.output


def test_unknown_precision_is_a_422_naming_it(client, keys):
    keys.tenant("t-a")
    response = client.get("/v1/usage", headers=auth(keys.key("t-a")), query_string={"percentiles": "fast"})
    assert response.status_code == 422
    assert "percentiles" in response.get_json()["errors"]["query"]


def tenant_at(database_url, tmp_path, migration):
    """(app, key of tenant t-a): an app whose database is migrated up to
    `migration`; `upgrade` it to go on."""
    app = build_app(database_url, tmp_path, migrate=False)
    with app.app_context():
        _router(database.obj).run(migration)
    return app, Keys(app).tenant_and_key_before_scopes("t-a")


def calls_stored_at(database_url, tmp_path, migration, seed):
    """(app, key of t-a, records): `tenant_at` `migration`, holding t-a's calls without cells."""
    app, key = tenant_at(database_url, tmp_path, migration)
    records = random_records(seeded(seed), ["t-a"], 50, START, END)
    insert_bypassing_rollups(app, records)
    return app, key, records


def assert_approximate_needs_a_rebuild(app, key, records):
    """A 503 naming the command, exact answers meanwhile; after the rebuild, approximate ones."""
    client = app.test_client()
    response = client.get("/v1/usage", headers=auth(key), query_string={"percentiles": "approximate"})
    assert response.status_code == 503
    assert "flask --app wsgi rollups rebuild" in response.get_json()["message"]
    assert_close(get(client, "/v1/usage", key), expected_stats(records, "t-a"))
    result = app.test_cli_runner().invoke(args=["rollups", "rebuild"])
    assert result.exit_code == 0, result.output
    assert_close(get(client, "/v1/usage", key, percentiles="approximate"), expected_stats(records, "t-a"))
    assert_cells_match(app, records)


def test_calls_stored_before_the_rollups_need_a_rebuild_first(database_url, tmp_path):
    """Migration 004 on a database already holding calls: approximate answers
    503 naming the command until `rollups rebuild` has run; exact works."""
    app, key, records = calls_stored_at(database_url, tmp_path, "003_covering_indexes_with_model", 14)
    with app.app_context():
        upgrade(database.obj)
    assert_approximate_needs_a_rebuild(app, key, records)


def insert_old_cell(grain, cell_start):
    """A cell as earlier code kept them (whatever its numbers), by SQL."""
    database.execute_sql(
        "INSERT INTO usage_rollup (grain, cell_start, tenant_id, operation, model, status, error_class,"
        " calls, cost_micro_usd, call_duration_sum, call_duration_min, call_duration_max,"
        " call_duration_sketch, input_tokens_sum, input_tokens_min, input_tokens_max, input_tokens_sketch,"
        " output_tokens_sum, output_tokens_min, output_tokens_max, output_tokens_sketch)"
        " VALUES (%s, %s, 't-a', 'op', 'm', 'ok', '', 1, 1, 1, 1, 1, '', 1, 1, 1, '', 1, 1, 1, '')"
        .replace("%s", database.param), (grain, cell_start))


def test_cells_older_than_tenant_month_cells_need_a_rebuild_first(database_url, tmp_path):
    """Migration 006 where cells exist: they lack the tenant_month cells beside
    them, so approximate needs a rebuild as after migration 004."""
    app, key, records = calls_stored_at(database_url, tmp_path, "005_rollup_sketch_pieces", 15)
    with app.app_context():
        insert_old_cell("month", "2026-02-01 00:00:00")
        database.execute_sql("UPDATE usage_rollup_state SET needs_rebuild = FALSE")
        upgrade(database.obj)
    assert_approximate_needs_a_rebuild(app, key, records)


def cells_stored_at(database_url, tmp_path, migration, seed):
    """(app, key of t-a, records): an app whose database is migrated up to
    `migration` (007 or earlier) and holds t-a's calls and their cells as
    that code kept them, sketches in 10-byte pairs."""
    app, key = tenant_at(database_url, tmp_path, migration)
    records = random_records(seeded(seed), ["t-a"], 80, START, END)
    insert_bypassing_rollups(app, records, with_cells=True)  # the cells 006 and 007 kept too;
    write_sketch_pairs(app, sketch_pairs(app, "<HH"), "<HQ")  # their sketches as those wrote them
    return app, key, records


def upgrade_to_015_then_rebuild(app):
    """Migrate up to 015 and check that no rebuild is needed then, then
    migrate on and rebuild: 016 needs one (tenant_day cells)."""
    with app.app_context():
        _router(database.obj).run("015_sealed_months")
        assert database.execute_sql("SELECT needs_rebuild FROM usage_rollup_state").fetchone()[0] in (0, False)
        upgrade(database.obj)
    result = app.test_cli_runner().invoke(args=["rollups", "rebuild"])
    assert result.exit_code == 0, result.output


def assert_cells_answer(app, key, records, seed):
    """The cells hold t-a's `records`, answer random windows, and pass `verify`."""
    assert_cells_match(app, records)
    client = app.test_client()
    for start, end in random_windows(seeded(seed)):
        assert_close(get(client, "/v1/usage", key, **window_params(start, end), percentiles="approximate"),
                     expected_stats(records, "t-a", start, end))
    result = app.test_cli_runner().invoke(args=["rollups", "verify"])
    assert result.exit_code == 0, result.output


def test_migration_007_deletes_hourly_cells_and_needs_no_rebuild(database_url, tmp_path):
    """Hourly cells are deleted and no longer admitted; the other cells stay
    as they were and answer at once."""
    app, key, records = cells_stored_at(database_url, tmp_path, "006_tenant_month_cells", 16)
    with app.app_context():
        insert_old_cell("hour", "2026-02-03 04:00:00")
        _router(database.obj).run("007_no_hourly_cells")
        with pytest.raises(IntegrityError), database.atomic():
            insert_old_cell("hour", "2026-02-03 05:00:00")
    upgrade_to_015_then_rebuild(app)
    assert_cells_answer(app, key, records, 17)


def sketch_pairs(app, layout):
    """{cell id: [its sketches as lists of (bin, count) pairs]}, decoded as `layout` (struct)."""
    with app.app_context():
        return {row[0]: [list(struct.iter_unpack(layout, bytes(sketch))) for sketch in row[1:]]
                for row in database.execute_sql(
                    "SELECT id, call_duration_sketch, input_tokens_sketch, output_tokens_sketch FROM usage_rollup")}


def write_sketch_pairs(app, cells, layout):
    """Store each cell's sketches {id: [pairs per metric]} encoded as `layout`."""
    with app.app_context(), database.atomic():
        for cell_id, sketches in cells.items():
            database.execute_sql(
                "UPDATE usage_rollup SET call_duration_sketch = {0}, input_tokens_sketch = {0},"
                " output_tokens_sketch = {0} WHERE id = {0}".format(database.param),
                [b"".join(struct.pack(layout, *pair) for pair in pairs) for pairs in sketches] + [cell_id])


def test_migration_008_writes_sketches_in_four_byte_pairs(database_url, tmp_path):
    """Sketches stored as 007's code wrote them, (bin: uint16, count: uint64)
    pairs, come out of 008 as (uint16, uint16) pairs with the same counts; a
    count above 65,535 as several pairs of its bin. The cells answer at once,
    and rolling 008 back restores the 10-byte pairs."""
    app, key, records = cells_stored_at(database_url, tmp_path, "007_no_hourly_cells", 18)
    pairs = sketch_pairs(app, "<HQ")
    with app.app_context():  # a tenant's month of 70,003 calls, 70,000 of them in bin 5
        insert_old_cell("tenant_month", "2025-01-01 00:00:00")
        (big,), = database.execute_sql("SELECT MAX(id) FROM usage_rollup").fetchall()
    write_sketch_pairs(app, {big: [[(5, 70_000), (7, 3)]] * 3}, "<HQ")
    with app.app_context():
        _router(database.obj).run("008_sketch_pairs_of_four_bytes")
    assert sketch_pairs(app, "<HH") == {**pairs, big: [[(5, 65_535), (5, 4_465), (7, 3)]] * 3}
    with app.app_context():
        database.execute_sql(f"DELETE FROM usage_rollup WHERE id = {big}")
    upgrade_to_015_then_rebuild(app)
    assert_cells_answer(app, key, records, 19)
    with app.app_context():  # back to before 008, through every migration after it
        # as 018's and 016's rollbacks do
        database.execute_sql("DELETE FROM usage_rollup WHERE grain IN ('tenant_day', 'model_day', 'failed_day')")
        pairs = sketch_pairs(app, "<HH")  # the cells as rebuilt
        roll_back_through(database.obj, "008_sketch_pairs_of_four_bytes")
    assert sketch_pairs(app, "<HQ") == pairs
