"""Exports of the call log: GET /v1/usage/calls and /v1/usage/all/calls with
`Accept: application/x-ndjson` or `text/csv`.

NDJSON lines must be records `flask calls import` reads back: an export
imported into a fresh database answers the same statistics. CSV cells that
a spreadsheet would run as a formula start with `'`. Expected rows are
computed here from the stored records (test_call_log's helpers).
"""
import csv
import datetime as dt
import io
import json
import runpy
import sys
import threading
from decimal import Decimal

import pytest

from app import liveness
from app.repository import calls_log
from conftest import ROOT, Keys, auth, backend_url, build_app
from data import record, store
from test_call_log import ALL, MICRO, OWN, T0, log, newest_first, utc_text, varied  # noqa: F401 (log: a fixture)

NDJSON, CSV = "application/x-ndjson", "text/csv"
FORMULAS = ["=HYPERLINK(\"http://x\",\"y\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(1)", "\tTAB", "\rCR", "\nLF"]


def export(client, path, key, accept, **params):
    response = client.get(path, headers={**auth(key), "Accept": accept}, query_string=params)
    assert response.status_code == 200, response.data
    assert response.mimetype == accept and "Accept" in response.headers["Vary"]
    return response


def lines(response):
    return [json.loads(line, parse_float=Decimal) for line in response.get_data(as_text=True).splitlines()]


def csv_cell(value):
    """A value as the CSV writes it: text starting like a formula behind a quote."""
    if value is None:
        return ""
    text = str(value)
    return "'" + text if isinstance(value, str) and text[:1] in ("=", "+", "-", "@", "\t", "\r", "\n") else text


def test_ndjson_has_every_matching_call_as_a_record(client, log, monkeypatch):
    monkeypatch.setattr(calls_log, "CHUNK_ROWS", 4)  # several chunks
    log(varied("acme", 19) + varied("globex", 6, start=T0 + dt.timedelta(seconds=5)))
    response = export(client, ALL, log.admin, NDJSON)
    assert response.headers["Content-Disposition"] == 'attachment; filename="calls_all_open_open.ndjson"'
    assert lines(response) == newest_first(log.stored)
    mine = export(client, OWN, log.acme, NDJSON, status="ok", **{"from": T0.isoformat()})
    assert lines(mine) == newest_first(log.stored, lambda r: r["tenant_id"] == "acme" and r["status"] == "ok")
    assert mine.headers["Content-Disposition"] == 'attachment; filename="calls_acme_20261101T000000Z_open.ndjson"'
    assert export(client, ALL, log.admin, NDJSON, tenant_id="nobody").get_data() == b""


def test_csv_has_a_header_and_a_row_per_call_with_formulas_neutralised(client, log, monkeypatch):
    monkeypatch.setattr(calls_log, "CHUNK_ROWS", 3)
    records = [record("acme", T0 + i * MICRO, model=text, cost="0.000001") for i, text in enumerate(FORMULAS)]
    records += [record("acme", T0 - i * MICRO, status="error", error_class=text, cost="0")
                for i, text in enumerate(FORMULAS, 1)]
    records += [record("acme", T0 + dt.timedelta(days=1), cost="123456.789012", model="gpt-4o")]
    log(records)
    text = export(client, OWN, log.acme, CSV).get_data(as_text=True)
    assert text.startswith("tenant_id,call_id,timestamp,operation,model,call_duration_ms,input_tokens,"
                           "output_tokens,cost_usd,status,error_class\r\n")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    expected = [[csv_cell(value) for value in call.values()] for call in newest_first(log.stored)]
    for row in expected:  # money with its six decimals
        row[8] = f"{Decimal(row[8]):.6f}"
    assert rows[1:] == expected
    assert rows[1][8] == "123456.789012" and rows[2][8] == "0.000001"
    assert {row[4] for row in rows[2:]} >= {"'" + formula for formula in FORMULAS}
    assert {row[10] for row in rows[2:]} >= {"'" + formula for formula in FORMULAS}


def test_an_export_refuses_limit_and_cursor(client, log):
    log(varied("acme", 3))
    cursor = client.get(OWN, headers=auth(log.acme), query_string={"limit": 1}).get_json()["next_cursor"]
    for accept in (NDJSON, CSV):
        for params in ({"limit": 10}, {"cursor": cursor}):
            response = client.get(OWN, headers={**auth(log.acme), "Accept": accept}, query_string=params)
            assert response.status_code == 422
            assert "leave out" in response.get_json()["errors"]["query"][next(iter(params))][0]
    assert client.get(OWN, headers={**auth(log.acme), "Accept": NDJSON},
                      query_string={"limit": 0}).get_json()["errors"]["query"]["limit"]


def test_an_export_holds_the_calls_stored_when_it_began(app, client, log, monkeypatch):
    """Calls recorded (by another thread) while an export streams, older and
    newer than its position, are not in it; every earlier call is, once."""
    monkeypatch.setattr(calls_log, "CHUNK_ROWS", 5)
    log(varied("acme", 30, step=dt.timedelta(minutes=10)))
    before = newest_first(log.stored)
    response = client.get(ALL, headers={**auth(log.admin), "Accept": NDJSON}, buffered=False)
    chunks = iter(response.response)
    received = [next(chunks)]
    for round_ in range(3):
        received.append(next(chunks))
        last = dt.datetime.fromisoformat(json.loads(received[-1].splitlines()[-1])["timestamp"])
        writer = threading.Thread(target=store, args=(app, [
            record("acme", last - MICRO, model=f"not yet read {round_}"),
            record("globex", last - dt.timedelta(hours=1), model=f"older {round_}"),
            record("acme", last + dt.timedelta(minutes=1), model=f"read {round_}")]))
        writer.start()
        writer.join()
    received += list(chunks)
    response.close()
    exported = [json.loads(line, parse_float=Decimal) for line in b"".join(received).splitlines()]
    assert exported == before


@pytest.mark.parametrize("accept", [NDJSON, CSV])
def test_the_openapi_document_names_both_exports(client, accept):
    spec = client.get("/openapi.json").get_json()
    for path in (OWN, ALL):
        assert accept in spec["paths"][path]["get"]["responses"]["200"]["content"]


def test_an_ndjson_export_imported_into_a_fresh_database_answers_the_same(app, client, log, database_url, tmp_path):
    log(varied("acme", 40, step=dt.timedelta(hours=5)) + varied("globex", 25, start=T0 + dt.timedelta(minutes=3))
        + [record("globex", T0 + dt.timedelta(days=2), cost="123456.789012", model="=SUM(1)"),
           record("acme", T0 + dt.timedelta(days=3), cost="0.000001", status="error", error_class="@x")])
    windows = [{}, {"from": "2026-11-02T00:00:00Z", "to": "2026-11-05T12:00:00Z"}]
    questions = [(path, {**window, "percentiles": precision}) for window in windows
                 for precision in ("exact", "approximate")
                 for path in ("/v1/usage/all", "/v1/usage/all/series")
                 if not (path.endswith("series") and not window)]
    answers = [client.get(path, headers=auth(log.admin), query_string=params).get_json() for path, params in questions]
    exported = export(client, ALL, log.admin, NDJSON).get_data(as_text=True)
    assert exported.count("\n") == len(log.stored)
    dump = tmp_path / "calls.ndjson"
    dump.write_text(exported)

    folder = tmp_path / "fresh"
    folder.mkdir()
    fresh = build_app(backend_url("sqlite" if database_url.startswith("sqlite") else "postgresql", folder), folder)
    keys = Keys(fresh)
    for tenant in ("acme", "globex"):
        keys.tenant(tenant)
    keys.tenant("ops", allows_superusers=True)
    admin = keys.key("ops", superuser=True)
    result = fresh.test_cli_runner().invoke(args=["calls", "import", str(dump)])
    assert result.exit_code == 0, result.output
    assert f"Imported: {len(log.stored)} created, 0 duplicates." in result.output
    again = fresh.test_client()
    assert [again.get(path, headers=auth(admin), query_string=params).get_json()
            for path, params in questions] == answers
    reexported = export(again, ALL, admin, NDJSON).get_data(as_text=True)
    assert sorted(reexported.splitlines()) == sorted(exported.splitlines())


def test_an_export_checks_in_with_gunicorn_after_each_chunk(client, log, monkeypatch, tmp_path):
    monkeypatch.setattr(calls_log, "CHUNK_ROWS", 2)
    beats = []
    monkeypatch.setattr(liveness, "_notify", lambda: beats.append(len(beats)))
    log(varied("acme", 7))
    assert len(lines(export(client, OWN, log.acme, NDJSON))) == 7
    assert len(beats) == 3  # chunks of 2, 2, 2 and 1: after each but the first
    # gunicorn.conf.py hands each worker's check-in over when the worker starts.
    worker = type("Worker", (), {"notify": lambda self: beats.append("worker")})()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # else the file makes one of its own
    runpy.run_path(str(ROOT / "gunicorn.conf.py"))["post_worker_init"](worker)
    liveness.notify()
    assert beats[-1] == "worker"


def test_the_memory_bench_measures_an_export_served_by_gunicorn(app, log, live_server):
    sys.path.insert(0, str(ROOT / "bench"))
    import export_rss

    log(varied("acme", 20) + [record("globex", T0, model="a\nb")])
    workers = export_rss.worker_pids(live_server)
    assert len(workers) == 3
    for accept in (NDJSON, CSV):
        result = export_rss.measure_export(live_server, log.reader, accept)
        assert (result["rows"], result["accept"], result["peak_reset"]) == (21, accept, True)
        assert result["worker"] in workers and result["peak_rss_kib"] > 10_000
        assert "21 rows" in export_rss.report(result)
