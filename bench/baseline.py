"""The baseline: each answer by hand-written SQL through the raw driver
(sqlite3 / psycopg) on the benchmark's database, and that driver (`Raw`)."""
import datetime as dt
import sqlite3
import time
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from peewee import PostgresqlDatabase

from app.db import POSTGRES_OPTIONS, database, sqlite_pragmas

UTC = dt.timezone.utc
SIZED = ("llm_call", "usage_rollup")  # the raw calls and their rollup cells


class Raw:
    """The raw driver on the same database, and the placeholder it wants."""

    def __init__(self, url):
        self.pg = isinstance(database.obj, PostgresqlDatabase)
        if self.pg:
            import psycopg
            parts = urlsplit(url)
            # Same session settings as the service's connections (work_mem).
            self.conn = psycopg.connect(urlunsplit(parts._replace(scheme="postgresql")),
                                        autocommit=True, options=POSTGRES_OPTIONS)
        else:
            import sqlite3
            # check_same_thread: the zones' baseline runs on three connections at once, in threads.
            self.conn = sqlite3.connect(database.obj.database, isolation_level=None, check_same_thread=False)
            for pragma in ("busy_timeout", "synchronous"):  # as durable as the service
                self.conn.execute(f"PRAGMA {pragma} = {sqlite_pragmas()[pragma]}")

    def compact(self):
        """Rewrite the database without the dead rows that deleting the earlier
        calls and rebuilding their cells left, so each scale of a ladder is
        measured as if loaded into a fresh database: at 10,000 calls after a
        run at 1,000,000, PostgreSQL otherwise scanned indexes bloated by a
        million dead entries (all-history exact /v1/usage/all: 97 ms, not 36)."""
        started = time.perf_counter()
        if self.pg:
            self.conn.execute("SET statement_timeout = 0")
            self.conn.execute("VACUUM FULL llm_call, usage_rollup")
            self.conn.execute("RESET statement_timeout")
        else:
            self.conn.execute("VACUUM")
        print(f"compacted the database in {time.perf_counter() - started:.1f} s")

    def sizes(self):
        """({table: (rows, table bytes, index bytes)} of llm_call and
        usage_rollup, how the bytes were measured). PostgreSQL: pg_table_size
        (with TOAST) and pg_indexes_size, which pg_total_relation_size adds up.
        SQLite: the pages of each b-tree by the dbstat virtual table; where
        SQLite lacks it, the file's pages alone (page_count), not split."""
        rows = {table: self.query(f"SELECT COUNT(*) FROM {table}")[0][0] for table in SIZED}
        if self.pg:
            found = self.query("SELECT relname, pg_table_size(oid), pg_indexes_size(oid) FROM pg_class"
                               " WHERE oid IN ('llm_call'::regclass, 'usage_rollup'::regclass)")
            return ({t: (rows[t], table, index) for t, table, index in found},
                    "pg_table_size + pg_indexes_size = pg_total_relation_size")
        try:
            found = self.query("SELECT m.tbl_name, m.type, SUM(s.pgsize) FROM dbstat('main', 1) AS s"
                               " JOIN sqlite_master AS m ON m.name = s.name"
                               " WHERE m.tbl_name IN ('llm_call', 'usage_rollup') GROUP BY 1, 2")
        except sqlite3.OperationalError:  # no dbstat in this SQLite
            pages = self.query("SELECT page_count * page_size FROM pragma_page_count, pragma_page_size")[0][0]
            return {t: (rows[t], 0, 0) for t in SIZED}, f"dbstat missing: the whole file is {pages:,} bytes"
        kinds = {(t, kind): size for t, kind, size in found}
        return {t: (rows[t], kinds.get((t, "table"), 0), kinds.get((t, "index"), 0)) for t in SIZED}, "dbstat"

    def ts(self, moment):
        """A UTC datetime as the column stores it (naive; text on SQLite)."""
        naive = moment.astimezone(UTC).replace(tzinfo=None)
        return naive if self.pg else naive.isoformat(" ")

    def sql(self, text):
        return text if self.pg else text.replace("%s", "?")

    def query(self, text, params=()):
        cursor = self.conn.cursor()
        cursor.execute(self.sql(text), params)
        return cursor.fetchall()


# The hand-written baseline. {where} is the window (and tenant) condition.
OPERATIONS_SQL = """
SELECT tenant_id, operation, model, COUNT(*),
       SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END),
       SUM(CASE WHEN status = 'ok' THEN cost_micro_usd ELSE 0 END),
       SUM(CASE WHEN status = 'ok' THEN input_tokens ELSE 0 END),
       SUM(CASE WHEN status = 'ok' THEN output_tokens ELSE 0 END)
FROM llm_call WHERE {where} GROUP BY tenant_id, operation, model"""
METRICS_SQL = """
SELECT tenant_id, COUNT(*),
       SUM(call_duration_ms), MIN(call_duration_ms), MAX(call_duration_ms),
       SUM(input_tokens), MIN(input_tokens), MAX(input_tokens),
       SUM(output_tokens), MIN(output_tokens), MAX(output_tokens)
FROM llm_call WHERE {where} AND status = 'ok' GROUP BY tenant_id"""
PCTS = (5, 50, 95, 99)
FRACTIONS = "ARRAY[0.05, 0.5, 0.95, 0.99]"
# p5/p50/p95/p99 per group ({group}: tenant_id, a bucket, ...) or over everyone ({group} NULL).
PG_PERCENTILES_SQL = """
SELECT {group},
       percentile_cont(%s) WITHIN GROUP (ORDER BY call_duration_ms),
       percentile_cont(%s) WITHIN GROUP (ORDER BY input_tokens),
       percentile_cont(%s) WITHIN GROUP (ORDER BY output_tokens)
FROM llm_call WHERE {where} AND status = 'ok' {group_by}""".replace("%s", FRACTIONS)
# SQLite has no percentile_cont: fetch the values at the two closest zero-based
# ranks of each percentile ((n - 1) * p / 100 and the next) and interpolate in Python.
SQLITE_RANKS_SQL = """
SELECT grp, n, call_duration_ms, r_d, input_tokens, r_i, output_tokens, r_o FROM (
  SELECT {group} AS grp, call_duration_ms, input_tokens, output_tokens,
         ROW_NUMBER() OVER ({partition} ORDER BY call_duration_ms) - 1 AS r_d,
         ROW_NUMBER() OVER ({partition} ORDER BY input_tokens) - 1 AS r_i,
         ROW_NUMBER() OVER ({partition} ORDER BY output_tokens) - 1 AS r_o,
         COUNT(*) OVER ({partition}) AS n
  FROM llm_call WHERE {where} AND status = 'ok')
WHERE r_d IN {ranks} OR r_i IN {ranks} OR r_o IN {ranks}"""
RANKS = "(" + ", ".join(f"(n - 1) * {p} / 100{step}" for p in PCTS for step in ("", " + 1")) + ")"


def interpolate(n, by_rank, pct):
    low, frac = (n - 1) * pct // 100, ((n - 1) * pct % 100) / 100
    return by_rank[low] + (by_rank[low + 1] - by_rank[low]) * frac if frac else float(by_rank[low])


def percentiles_by_group(raw, group, where, params):
    """{group value: percentiles of the three metrics} over ok records."""
    partition = "" if group == "NULL" else f"PARTITION BY {group}"
    if raw.pg:
        group_by = "" if group == "NULL" else f"GROUP BY {group}"
        return raw.query(PG_PERCENTILES_SQL.format(group=group, where=where, group_by=group_by), params)
    rows = raw.query(SQLITE_RANKS_SQL.format(group=group, where=where, ranks=RANKS,
                                             partition=partition), params)
    ranks = {}  # {grp: (n, [{rank: value} for each metric])}
    for grp, n, *pairs in rows:
        _, by_metric = ranks.setdefault(grp, (n, [{}, {}, {}]))
        for by_rank, value, rank in zip(by_metric, pairs[0::2], pairs[1::2]):
            by_rank[rank] = value
    return {grp: [[interpolate(n, by_rank, p) for p in PCTS] for by_rank in by_metric]
            for grp, (n, by_metric) in ranks.items()}


def window_condition(raw, tenant, start, end):
    conditions = [("timestamp >= %s", start and raw.ts(start)),
                  ("timestamp < %s", end and raw.ts(end)),
                  ("tenant_id = %s", tenant)]
    where = " AND ".join(["1 = 1"] + [sql for sql, value in conditions if value])
    return where, [value for _, value in conditions if value]


def baseline_answer(raw, tenant, window):
    """The same statistics by hand-written SQL; `tenant` None: every tenant and the total."""
    where, params = window_condition(raw, tenant, *window)
    answer = {"operations": raw.query(OPERATIONS_SQL.format(where=where), params),
              "metrics": raw.query(METRICS_SQL.format(where=where), params)}
    for group in ["tenant_id"] + ([] if tenant else ["NULL"]):
        answer[group] = percentiles_by_group(raw, group, where, params)
    return answer


SERIES_SQL = """
SELECT {bucket} AS bucket, {group} AS grp, COUNT(*),
       SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END),
       SUM(CASE WHEN status = 'ok' THEN cost_micro_usd ELSE 0 END),
       SUM(CASE WHEN status = 'ok' THEN call_duration_ms END),
       MIN(CASE WHEN status = 'ok' THEN call_duration_ms END),
       MAX(CASE WHEN status = 'ok' THEN call_duration_ms END),
       SUM(CASE WHEN status = 'ok' THEN input_tokens END),
       MIN(CASE WHEN status = 'ok' THEN input_tokens END),
       MAX(CASE WHEN status = 'ok' THEN input_tokens END),
       SUM(CASE WHEN status = 'ok' THEN output_tokens END),
       MIN(CASE WHEN status = 'ok' THEN output_tokens END),
       MAX(CASE WHEN status = 'ok' THEN output_tokens END)
FROM llm_call WHERE {where} GROUP BY 1, 2"""
# A UTC bucket as a hand-writer would compute it on each engine.
BUCKETS = {("pg", "day"): "date_trunc('day', timestamp)", ("pg", "hour"): "date_trunc('hour', timestamp)",
           ("sqlite", "day"): "substr(timestamp, 1, 10)", ("sqlite", "hour"): "substr(timestamp, 1, 13)"}


def baseline_series(raw, tenant, window, unit, group, zone=None):
    """A series by hand-written SQL: aggregates, then percentiles, per (bucket,
    group). Buckets of UTC (BUCKETS), or with `zone` the days of that IANA zone
    (`zone_day`)."""
    where, params = window_condition(raw, tenant, *window)
    bucket = zone_day(raw, zone, *window) if zone else BUCKETS["pg" if raw.pg else "sqlite", unit]
    group_sql = group or "NULL"
    answer = {"aggregates": raw.query(SERIES_SQL.format(bucket=bucket, group=group_sql, where=where), params)}
    key = f"{bucket}, {group}" if group else bucket
    if raw.pg:
        answer["percentiles"] = raw.query(PG_PERCENTILES_SQL.format(
            group=key, where=where, group_by=f"GROUP BY {key}"), params)
    else:
        answer["percentiles"] = percentiles_by_group(
            raw, f"{bucket} || '|' || {group}" if group else bucket, where, params)
    return answer


def zone_day(raw, zone, start, end):
    """SQL of the local day in `zone` holding a row's timestamp (naive UTC).

    PostgreSQL: the local midnight, by date_trunc on the zone's wall clock.
    SQLite knows no zones: the local midnights inside [start, end) are
    computed here (zoneinfo) and the SQL numbers the day by comparing the
    timestamp with them, a balanced CASE: 7 comparisons a row for 90 days."""
    if raw.pg:
        return f"date_trunc('day', timestamp AT TIME ZONE 'UTC' AT TIME ZONE '{zone}')"
    tz, edges = ZoneInfo(zone), []
    day = start.astimezone(tz).date() + dt.timedelta(days=1)
    while (midnight := dt.datetime.combine(day, dt.time(0), tzinfo=tz).astimezone(UTC)) < end:
        edges.append(raw.ts(midnight))
        day += dt.timedelta(days=1)

    def day_among(lo, hi):  # the day, knowing it follows edges[lo - 1] and precedes edges[hi]
        if lo == hi:
            return str(lo)
        mid = (lo + hi) // 2
        return f"CASE WHEN timestamp < '{edges[mid]}' THEN {day_among(lo, mid)} ELSE {day_among(mid + 1, hi)} END"
    return day_among(0, len(edges))
