"""Benchmark of the usage service against hand-written SQL on the same data.

`make bench BENCH_ARGS="..."` works on a database of its own: --database-url,
else BENCH_DATABASE_URL, else the SQLite file instance/bench.db (created and
migrated as needed). DATABASE_URL is ignored, so the benchmark never writes
to the database `make run` serves (instance/usage.db) or to production.
SQLite connections, the service's and the baseline's alike, take their
pragmas from the environment as the service does (SQLITE_SYNCHRONOUS,
SQLITE_BUSY_TIMEOUT).

1. seeds synthetic calls (default 1,000,000 over 50 tenants `bench-t000`... and
   90 days ending now), replacing earlier `bench-*` calls (`--no-seed`: keep them),
   as raw rows drawn with NumPy and written by COPY (PostgreSQL) or one executemany
   transaction (SQLite), bench/seeding.py; then rebuilds the rollups (`rollups
   rebuild`, with the zones' day cells of `--rollup-zones`), reporting both rates. If llm_call held bench calls alone, it and
   usage_rollup were emptied at once (TRUNCATE) and llm_call's indexes built after
   the rows; else the bench calls were DELETEd, and the database is compacted
   (VACUUM [FULL]);
2. under gunicorn (2 workers), measures p50/p95 latency of GET /v1/usage (key of
   bench-t000) and GET /v1/usage/all (superuser key of `bench-ops`), last 30 days
   and all history, then of the series routes: /v1/usage/all/series over 30 days
   by day grouped by tenant_id, and /v1/usage/series over 90 days by hour, each
   with percentiles=exact and =approximate: `--requests` sequential requests
   after one warm-up; then, in each of `--zones` (bench/zones.py), the dashboard
   page's own three requests sent at once as the page sends them (30 local days),
   /v1/usage/all/series over 90 local days by day grouped by tenant_id, and
   /v1/usage/all over 30 local days up to now: one table, the zone a column;
3. times the baseline, the same answer by hand-written SQL through the raw driver
   (sqlite3 / psycopg; bench/baseline.py), same windows and repetitions, taking
   turns with the service's requests of the same measurement. Local days: on
   PostgreSQL date_trunc on the zone's wall clock, on SQLite (no zones) a CASE
   comparing each timestamp with the local midnights computed in Python;
4. POSTs `--ingest-batches` batches of 1000 records to /v1/usage/calls (if it
   exists) and compares with raw INSERT ... ON CONFLICT DO NOTHING of as many rows
   (executemany, one transaction per 1000 rows), for two shapes of batch: `live`
   (one tenant's calls of the last 10 minutes, as the backend posts them) and
   `backfill` (every tenant, spread over the last day). The raw insert keeps no
   rollups; the service keeps them in the same transaction.

After each seed it prints the rows and bytes of llm_call and of usage_rollup,
indexes included (PostgreSQL: pg_table_size and pg_indexes_size; SQLite: the
dbstat virtual table, or only the file's size where SQLite lacks it).

`--ladder 10000,100000,1000000` runs 1-3 at each scale (the ingestion once, at
the last) and then prints each measurement's growth from the smallest scale
to the largest, the zones' included, the approximate time as a share of the
exact one, and the tables' sizes at every scale.

`--zones-alone` measures the zones' approximate answers and nothing else: no
exact answer, no baseline, no other read, export or ingestion. At 10M calls a
full run takes about 35 minutes, most of it exact scans of gigabytes, and an
approximate answer timed in turn with them reads cells the scans pushed out of
memory; alone, the ladder `1000000,10000000` takes about 5 minutes (seeding included).

`--growth-against URL` measures the same answers on --database-url and on URL,
two databases seeded before (say 1M and 10M calls), taking turns request by
request, and prints each answer's growth from the first to the second. The
ladder measures one scale after the other, minutes apart, and on a machine
whose speed drifts by a fifth within minutes that moved a growth as much.

Every ratio reads the same way, reads and ingestion alike: ratio = service time
/ baseline time, lower is better; 1.0 means no cost over the SQL itself, 3.0 three
times as long (ingestion's ≥ 0.5x-the-raw-rate target is a ratio ≤ 2.0). The
baseline ("baseline p50") is the same answer, or the same rows stored, by
hand-written SQL through the raw driver (bench/baseline.py). The service's time
includes HTTP, the API-key lookup and JSON; the baseline's is the SQL plus a few
lines of Python.

percentiles=approximate pays off only at scale: it reads rollup cells instead of
the window's calls, so it is slower than exact on a small history (10,000 calls:
a few cells per call) and history-independent on a large one (the ladder's
growth table shows it).
"""
import argparse
import contextlib
import datetime as dt
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
from peewee import PostgresqlDatabase

from app import accounts, create_app
from app.budgets import service as budget_service
from app.db import database, sqlite_pragmas
from app.models import LlmCall, Tenant
from app.repository import rollups

import seeding
import zones
from export_rss import measure_export, report as report_export
from baseline import Raw, baseline_answer, baseline_series
from seeding import ERRORS, MODELS, OPERATIONS, tenant_ids

ROOT = Path(__file__).resolve().parent.parent
UTC = dt.timezone.utc
BATCH = 1000  # records per ingestion request / raw transaction
SUPER_TENANT = "bench-ops"
DEFAULT_URL = f"sqlite:///{ROOT / 'instance' / 'bench.db'}"


def synthetic_call(rng, tenants, now, span_s):
    """One llm_call row (dict of LlmCall fields); ~10% errors."""
    model = rng.choice(tuple(MODELS))
    ok = rng.random() >= 0.10
    input_tokens = rng.randint(50, 8000)
    output_tokens = rng.randint(10, 2000) if ok else 0
    price_in, price_out = MODELS[model]
    return {
        "call_id": uuid.UUID(int=rng.getrandbits(128), version=4),
        "tenant": rng.choice(tenants),
        "operation": rng.choice(OPERATIONS),
        "timestamp": now - dt.timedelta(seconds=rng.random() * span_s),
        "call_duration_ms": int(rng.lognormvariate(7.0, 0.6)),
        "model": model,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cost_micro_usd": round(input_tokens * price_in + output_tokens * price_out) if ok else 0,
        "status": "ok" if ok else "error",
        "error_class": None if ok else rng.choice(ERRORS),
    }


def seed(args, url, now, calls):
    """Replace the bench calls by `calls` synthetic ones (bench/seeding.py),
    then rebuild the rollups; return whether earlier calls were deleted row
    by row (dead rows that `Raw.compact` rewrites away)."""
    tenants = tenant_ids(args.tenants)
    existing = {t for (t,) in Tenant.select(Tenant.tenant_id).tuples()}
    for tenant_id in tenants + [SUPER_TENANT]:
        if tenant_id not in existing:
            accounts.create_tenant(tenant_id, allows_superusers=tenant_id == SUPER_TENANT)
    if args.no_seed and not args.ladder:
        return False
    database.close()
    database.obj.close_all()  # SQLite leaves WAL for the seed only as the file's one connection
    raw = Raw(url)
    chunks = seeding.generated(np.random.default_rng(args.seed), calls, args.tenants, now, args.days * 86400,
                               progress=lambda done: sys.stderr.isatty() and print(
                                   f"\r  seeded {done:,} / {calls:,}", end="", file=sys.stderr, flush=True))
    try:
        seeded = (seeding.seed_postgres if raw.pg else seeding.seed_sqlite)(raw.conn, chunks, now)
    finally:
        raw.conn.close()
    print(f"\r{'':40}\r" if sys.stderr.isatty() else "", end="", file=sys.stderr)
    for note in seeded.notes:
        print(note)
    elapsed = seeded.write_s + seeded.build_s
    print(f"seeded {seeded.rows:,} calls over {args.tenants} tenants / {args.days} days in {elapsed:.1f} s "
          f"({seeded.rows / elapsed:,.0f} rows/s: rows {seeded.write_s:.1f} s, "
          f"then indexes and keys {seeded.build_s:.1f} s)")
    rebuild_rollups()
    return bool(seeded.deleted)


def rebuild_rollups():
    """`flask rollups rebuild`, in process: the seeding bypassed the rollups."""
    started = time.perf_counter()
    rollups.seal()  # months before the current one sealed: rebuilt with their month cells
    months = rollups.months_to_rebuild()
    cells = sum(rollups.rebuild_month(month) for month in months)
    rollups.mark_rebuilt()
    elapsed = time.perf_counter() - started
    calls = LlmCall.select().count()
    print(f"rollups rebuilt: {cells:,} cells from {calls:,} calls in {elapsed:.1f} s "
          f"({calls / elapsed:,.0f} calls/s)")


def upgrade_schema(url):
    """Migrate the bench database as an operator would (`flask db upgrade`, with
    the long statement limit that index builds over many rows need)."""
    result = subprocess.run([str(ROOT / ".venv/bin/flask"), "--app", "wsgi", "db", "upgrade"], cwd=ROOT,
                            env={**os.environ, "DATABASE_URL": url}, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"db upgrade failed: {result.stderr.strip()}")


def start_gunicorn(url, log):
    """gunicorn on a free port, once /healthz answers; returns (process, base URL)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [str(ROOT / ".venv/bin/gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}",
           "--timeout", "600", "wsgi:app"]
    # All-history statistics over a million SQLite rows take longer than the
    # service's default 30 s limit; the benchmark measures them rather than the 503.
    env = {"DB_STATISTICS_TIMEOUT": "600", **os.environ, "DATABASE_URL": url}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    log.seek(0)
    raise SystemExit("gunicorn did not answer /healthz in 30 s:\n" + log.read()[-3000:])


def http(base, path, key, body=None):
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    request = urllib.request.Request(base + path, data=body, headers=headers)
    with urllib.request.urlopen(request, timeout=900) as response:
        return response.read()


def timed(*funcs, repeats):
    """Seconds of each of `repeats` calls of each of `funcs`, after one
    warm-up call each: a list of samples per function. The functions take
    turns, so that whatever else the machine does slows each of them alike
    (timed one after the other, the service and its baseline were measured
    at different moments, and their ratio moved with the machine's load)."""
    for func in funcs:
        func()
    samples = [[] for _ in funcs]
    for _ in range(repeats):
        for func, func_samples in zip(funcs, samples):
            started = time.perf_counter()
            func()
            func_samples.append(time.perf_counter() - started)
    return samples


def pct(samples, p):
    return statistics.quantiles(samples, n=100, method="inclusive")[p - 1] if len(samples) > 1 else samples[0]


def iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


PRECISIONS = ("exact", "approximate")


def report(results, row, service, baseline):
    """Print one measurement and keep it in `results` {row: (p50, p95, baseline p50)}."""
    s50, s95, b50 = pct(service, 50), pct(service, 95), pct(baseline, 50)
    results[row] = (s50, s95, b50)
    path, label, precision = row
    print(f"{path:<22}{label:<20}{precision:<13}{s50 * 1000:>10.1f} ms{s95 * 1000:>10.1f} ms"
          f"{b50 * 1000:>11.1f} ms{s50 / b50:>8.2f}")


def measure_reads(args, base, raw, keys, now):
    """{(endpoint, window, precision): (p50, p95, baseline p50)}, printed as measured."""
    results = {}
    windows = {"30 days": (now - dt.timedelta(days=30), now), "all history": (None, None)}
    endpoints = {"/v1/usage": (keys["tenant"], "bench-t000"), "/v1/usage/all": (keys["super"], None)}
    print("\nreads: service p50/p95 over HTTP; baseline p50 = the same answer by hand-written SQL"
          " (bench/baseline.py);\nratio = service p50 / baseline p50 (lower is better, 1.0 = no overhead);"
          "\napproximate pays off only at scale: on a small history exact can be faster")
    print(f"\n{'endpoint':<22}{'window':<20}{'percentiles':<13}{'service p50':>13}{'service p95':>13}"
          f"{'baseline p50':>14}{'ratio':>8}")
    for path, (key, tenant) in endpoints.items():
        for label, (start, end) in windows.items():
            paths = [f"{path}?" + urlencode({**({"from": iso(start), "to": iso(end)} if start else {}),
                                             "percentiles": precision}) for precision in PRECISIONS]
            baseline, *service = timed(lambda: baseline_answer(raw, tenant, (start, end)),
                                       *(lambda p=p: http(base, p, key) for p in paths), repeats=args.requests)
            for precision, samples in zip(PRECISIONS, service):
                report(results, (path, label, precision), samples, baseline)
    series = [("/v1/usage/all/series", keys["super"], None, 30, "day", "tenant_id"),
              ("/v1/usage/series", keys["tenant"], "bench-t000", 90, "hour", None)]
    for path, key, tenant, days, unit, group in series:
        start = now - dt.timedelta(days=days)
        paths = [f"{path}?" + urlencode({"from": iso(start), "to": iso(now), "bucket": unit,
                                         "group_by": group or "", "percentiles": precision})
                 for precision in PRECISIONS]
        baseline, *service = timed(lambda: baseline_series(raw, tenant, (start, now), unit, group),
                                   *(lambda p=p: http(base, p, key) for p in paths), repeats=args.requests)
        label = f"{days} d by {unit}" + (f"/{group[:6]}" if group else "")
        for precision, samples in zip(PRECISIONS, service):
            report(results, (path, label, precision), samples, baseline)
    return results


def report_growth(by_scale):
    """How each measurement grows from the smallest scale to the largest; the
    zone measurements' rows (keyed by a fourth value, the zone) name it."""
    scales = sorted(by_scale)
    smallest, largest = by_scale[scales[0]], by_scale[scales[-1]]
    print(f"\ngrowth from {scales[0]:,} to {scales[-1]:,} calls (service p50, largest / smallest):")
    print(f"{'zone':<16}{'endpoint':<22}{'window':<20}{'percentiles':<13}{'growth':>9}")
    for row in largest:
        path, label, precision, *zone = row
        if row in smallest:
            exact = largest.get((path, label, "exact", *zone))
            share = f"   {largest[row][0] / exact[0]:.1%} of exact" if precision != "exact" and exact else ""
            print(f"{(zone or ['UTC'])[0]:<16}{path:<22}{label:<20}{precision:<13}"
                  f"{largest[row][0] / smallest[row][0]:>8.2f}x{share}")


def report_sizes(sizes_by_scale):
    """Rows and bytes of llm_call and usage_rollup at each scale (Raw.sizes)."""
    print(f"\n{'calls':>12}  {'table':<14}{'rows':>12}{'total MB':>11}{'table MB':>11}{'index MB':>11}"
          f"{'bytes / llm_call':>18}")
    for total, (sizes, source) in sorted(sizes_by_scale.items()):
        raw_bytes = sum(sizes["llm_call"][1:])
        for table, (rows, table_bytes, index_bytes) in sizes.items():
            share = f"{(table_bytes + index_bytes) / raw_bytes:>18.3f}" if raw_bytes and table != "llm_call" else ""
            print(f"{total:>12,}  {table:<14}{rows:>12,}{(table_bytes + index_bytes) / 1e6:>11.1f}"
                  f"{table_bytes / 1e6:>11.1f}{index_bytes / 1e6:>11.1f}{share}")
    print(f"(bytes by {source})")


def measure_zones(args, base, url, keys, now):
    """bench/zones.py's measurements, the baseline on three connections."""
    raws = [Raw(url) for _ in range(3)]
    try:
        return zones.measure(args.zones, now, raws, lambda path: http(base, path, keys["super"]),
                             timed, pct, args.requests, alone=args.zones_alone)
    finally:
        for raw in raws:
            raw.conn.close()


def measure_growth(args, url, now):
    """--growth-against: the zones' approximate answers on two databases seeded
    before (bench/zones.py measure_growth), each served by its own gunicorn,
    with a superuser key of `bench-ops` made for the run and revoked after."""
    upgrade_schema(args.growth_against)  # main() migrated `url`
    made, gets = [], []
    with contextlib.ExitStack() as stack:
        for each in (url, args.growth_against):
            with create_app({"DATABASE_URL": each}).app_context():
                if not Tenant.select().where(Tenant.tenant_id == SUPER_TENANT).exists():
                    raise SystemExit(f"{each} holds no bench calls: seed it first (without --growth-against)")
                api_key, key = accounts.create_key(SUPER_TENANT, "bench", is_superuser=True)
                print(f"{each}: llm_call holds {LlmCall.select().count():,} rows")
            database.close()
            made.append((each, api_key))
            log = stack.enter_context(tempfile.TemporaryFile("w+"))
            proc, base = start_gunicorn(each, log)
            stack.callback(proc.wait, timeout=30)
            stack.callback(proc.terminate)
            gets.append(lambda path, base=base, key=key: http(base, path, key))
        try:
            zones.measure_growth(args.zones, now, gets, timed, pct, args.requests)
        finally:
            for each, api_key in made:
                with create_app({"DATABASE_URL": each}).app_context():
                    accounts.revoke_key(api_key.key_id)
                database.close()


# Two shapes of batch: what the backend posts as calls happen (one tenant's
# calls of the last 10 minutes: few rollup cells per batch), and a backfill
# (every tenant, spread over a day: about 1.4 new or changed cells per call).
INGESTION_SHAPES = {"live": (1, 600), "backfill": (None, 86400)}


@contextlib.contextmanager
def budgets_of(app, tenants, per_tenant):
    """`per_tenant` budgets for each of `tenants` while the block runs, in the
    tenant's own zone (one of four, :30 offsets and DST included): every
    period, some for one model or operation, thresholds at 50, 80 and 100% of
    amounts that a batch's calls can cross."""
    zones = ("UTC", "Europe/Berlin", "Asia/Kolkata", "America/New_York")
    with app.app_context():
        made = [budget_service.create_budget(
                    tenant, f"bench {n}", Decimal(10 * (n + 1)), ("day", "week", "month")[n % 3],
                    zones[number % len(zones)], (50, 80, 100), n % 2 == 0,
                    tuple(MODELS)[n % len(MODELS)] if n % 4 == 3 else None,
                    OPERATIONS[n % len(OPERATIONS)] if n % 5 == 4 else None)
                for number, tenant in enumerate(tenants) for n in range(per_tenant)]
    database.close()
    try:
        yield
    finally:
        with app.app_context():
            for budget in made:
                budget_service.delete_budget(budget.id)
        database.close()


def measure_ingestion(args, app, base, raw, keys, now, shape):
    tenant_count, span_s = INGESTION_SHAPES[shape]
    tenants = tenant_ids(args.tenants)[:tenant_count]
    for per_tenant in sorted({0, args.budgets}):
        with budgets_of(app, tenants, per_tenant):
            _measure_ingestion(args, base, raw, keys, now, shape, tenants, span_s,
                               f"{per_tenant} budgets per tenant")


def _measure_ingestion(args, base, raw, keys, now, shape, tenants, span_s, budgets):
    rng = random.Random()  # fresh call_ids on every run
    count = args.ingest_batches * BATCH
    # One warm-up batch, `count` calls over HTTP, `count` other calls through the raw driver.
    calls = [synthetic_call(rng, tenants, now, span_s) for _ in range(BATCH + 2 * count)]

    def record(call):
        rec = {"tenant_id": call["tenant"], "call_id": str(call["call_id"]),
               **{k: call[k] for k in ("operation", "call_duration_ms", "model",
                                       "input_tokens", "output_tokens", "status")},
               "timestamp": call["timestamp"].strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
               "cost_usd": f"{call['cost_micro_usd'] // 10**6}.{call['cost_micro_usd'] % 10**6:06d}"}
        if call["error_class"]:
            rec["error_class"] = call["error_class"]
        return rec

    bodies = [json.dumps({"calls": [record(c) for c in calls[i:i + BATCH]]}).encode()
              for i in range(0, BATCH + count, BATCH)]
    try:
        http(base, "/v1/usage/calls", keys["super"], bodies[0])
    except urllib.error.HTTPError as error:
        if error.code in (404, 405):
            print("\ningestion: endpoint not available")
            return
        raise SystemExit(f"ingestion: POST /v1/usage/calls answered {error.code}: {error.read()[:500]!r}")
    created_at = raw.ts(dt.datetime.now(UTC))
    rows = [(c["call_id"] if raw.pg else c["call_id"].hex, c["tenant"], c["operation"],
             raw.ts(c["timestamp"]), c["call_duration_ms"], c["model"], c["input_tokens"],
             c["output_tokens"], c["cost_micro_usd"], c["status"], c["error_class"], created_at)
            for c in calls[BATCH + count:]]
    insert = raw.sql(
        "INSERT INTO llm_call (call_id, tenant_id, operation, timestamp, call_duration_ms, model,"
        " input_tokens, output_tokens, cost_micro_usd, status, error_class, created_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (tenant_id, call_id) DO NOTHING")
    raw_batches = iter(range(0, count, BATCH))

    def raw_batch():
        start = next(raw_batches)
        cursor = raw.conn.cursor()
        cursor.execute("BEGIN")
        cursor.executemany(insert, rows[start:start + BATCH])
        cursor.execute("COMMIT")

    created = 0

    def service_batch(bodies=iter(bodies[1:])):
        nonlocal created
        created += json.loads(http(base, "/v1/usage/calls", keys["super"], next(bodies)))["created"]

    # The service's batches and the raw ones take turns, as the reads do (`timed`):
    # whatever else the machine does then slows both alike.
    service_s, raw_s = 0.0, 0.0
    for _ in range(args.ingest_batches):
        for func in (service_batch, raw_batch):
            started = time.perf_counter()
            func()
            elapsed = time.perf_counter() - started
            if func is service_batch:
                service_s += elapsed
            else:
                raw_s += elapsed
    print(f"\ningestion ({shape}, {budgets}), {args.ingest_batches} batches of {BATCH} ({created:,} created),"
          f" taking turns with the baseline (raw INSERT ... ON CONFLICT DO NOTHING, no rollups):"
          f" service {count / service_s:,.0f} calls/s, baseline {count / raw_s:,.0f} rows/s,"
          f" ratio (service time / baseline time) {service_s / raw_s:.2f}"
          f" = service at {raw_s / service_s:.2f}x the baseline's rate")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's default in --help, and this module's docstring as written."""


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL") or DEFAULT_URL,
                        help="database to seed and measure (playhouse.db_url syntax); "
                             "BENCH_DATABASE_URL sets the default, DATABASE_URL is ignored")
    parser.add_argument("--calls", type=int, default=1_000_000, help="calls to seed (up to 10,000,000 and more)")
    parser.add_argument("--ladder", metavar="N,N,...",
                        help="scales to run one after the other, e.g. 10000,100000,1000000 (each "
                             "re-seeds); then prints how each measurement grows (overrides --calls)")
    parser.add_argument("--tenants", type=int, default=50, help="tenants bench-t000... to spread them over")
    parser.add_argument("--days", type=int, default=90, help="days of history ending now")
    parser.add_argument("--seed", type=int, default=42, help="random seed of the synthetic calls")
    parser.add_argument("--no-seed", action="store_true",
                        help="keep the bench calls already stored instead of seeding new ones")
    parser.add_argument("--zones", type=zones.zone_list, default=zones.DEFAULT_ZONES,
                        help="IANA zones whose dashboards are measured (bench/zones.py); '' for none")
    parser.add_argument("--rollup-zones", metavar="ZONE,ZONE,...",
                        help="ROLLUP_ZONES of the service measured (app/local_days.py): the zones whose local "
                             "days get cells; default: those of --zones but UTC, whose days have theirs; '' none")
    parser.add_argument("--zones-alone", action="store_true",
                        help="measure only the zones' approximate answers: no exact answer, baseline, other "
                             "read, export or ingestion")
    parser.add_argument("--growth-against", metavar="URL",
                        help="measure the zones' approximate answers on --database-url and on URL (a larger "
                             "history, both seeded before), taking turns request by request, and print each "
                             "answer's growth from the first to the second; nothing else is measured or seeded")
    parser.add_argument("--requests", type=int, default=20, help="samples per latency measurement")
    parser.add_argument("--ingest-batches", type=int, default=20,
                        help=f"batches of {BATCH} records to POST (and to insert raw)")
    parser.add_argument("--budgets", type=int, default=20,
                        help="ingestion is measured again with this many budgets per tenant (0: not)")
    return parser.parse_args()


def main():
    args = parse_args()
    # The service's setting, for this process (the rebuild) and gunicorn's workers alike.
    os.environ["ROLLUP_ZONES"] = ",".join(name for name in args.zones if name != "UTC") \
        if args.rollup_zones is None else args.rollup_zones
    app = create_app({"DATABASE_URL": args.database_url})
    url = app.config["DATABASE_URL"]
    now = dt.datetime.now(UTC).replace(microsecond=0)
    upgrade_schema(url)
    if args.growth_against:
        return measure_growth(args, url, now)
    scales = [int(n) for n in args.ladder.split(",")] if args.ladder else [args.calls]
    with app.app_context():
        sqlite = "" if isinstance(database.obj, PostgresqlDatabase) else \
            f" (synchronous={sqlite_pragmas()['synchronous']})"
        print(f"database: {url}{sqlite}; ROLLUP_ZONES={','.join(app.config['ROLLUP_ZONES']) or '(none)'}")
    by_scale, sizes_by_scale = {}, {}
    for number, calls in enumerate(scales):
        with app.app_context():
            deleted = seed(args, url, now, calls)
            made = {"tenant": accounts.create_key("bench-t000", "bench"),
                    "super": accounts.create_key(SUPER_TENANT, "bench", is_superuser=True)}
            keys = {role: key_string for role, (_, key_string) in made.items()}
            total = LlmCall.select().count()
        database.close()
        print(f"llm_call holds {total:,} rows")
        raw = Raw(url)
        if deleted:
            raw.compact()
        if raw.pg:
            raw.conn.execute("VACUUM ANALYZE")  # what autovacuum does after a bulk load
        sizes_by_scale[total] = raw.sizes()
        report_sizes({total: sizes_by_scale[total]})
        with tempfile.TemporaryFile("w+") as log:
            proc, base = start_gunicorn(url, log)
            try:
                by_scale[total] = {} if args.zones_alone else measure_reads(args, base, raw, keys, now)
                for accept in () if args.zones_alone else ("application/x-ndjson", "text/csv"):
                    print(report_export(measure_export(base, keys["super"], accept)))  # the export's worker's peak RSS
                if args.zones:
                    by_scale[total].update(measure_zones(args, base, url, keys, now))
                if number == len(scales) - 1 and args.ingest_batches and not args.zones_alone:
                    for shape in INGESTION_SHAPES:
                        measure_ingestion(args, app, base, raw, keys, now, shape)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
                raw.conn.close()
                with app.app_context():  # the keys served their purpose
                    for api_key, _ in made.values():
                        accounts.revoke_key(api_key.key_id)
    if len(by_scale) > 1:
        report_growth(by_scale)
        report_sizes(sizes_by_scale)


if __name__ == "__main__":
    main()
