"""Dashboards in every time zone: per zone, the requests the dashboard page
sends, the series of every tenant by local day, and the totals of 30 local
days, each timed against the same answers by hand-written SQL.

What the dashboard sends (app/dashboard/static/main.js `requestsFor` and
`fetchAll`, view.js `windowOf`), signed in with a key of all:read and left
at its defaults (window 30d, bucket day, group by model, every tenant, the
browser's zone Z): three requests at once (Promise.all), in this order and
with these parameters:

    /v1/usage/all?from=F&to=T&percentiles=P
    /v1/usage/all/series?from=F&to=T&bucket=day&tz=Z&percentiles=P
    /v1/usage/all/series?from=F&to=T&bucket=day&tz=Z&group_by=model&percentiles=P

T is the next local midnight in Z (today is included), F the local midnight
30 days before it, both sent as UTC instants without milliseconds
(`2026-11-06T18:30:00Z` in Asia/Kolkata). P is approximate; exact only after
a 503 (rollups never rebuilt). A first load sends no If-None-Match (later
ones are answered 304 while nothing changed): measured here as first loads.
/v1/me is read at sign-in only, and no budgets are read for every tenant.

The set is timed from the first request sent to the last answer read, the
three sent at once as the page does (gunicorn's 2 workers then serve two
while the third waits); its baseline runs the three answers at once too, on
three connections.
"""
import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from baseline import baseline_answer, baseline_series

UTC = dt.timezone.utc
DEFAULT_ZONES = "UTC,Europe/Berlin,Asia/Kolkata,Asia/Kathmandu"
PRECISIONS = ("exact", "approximate")
SET_PATH = "dashboard, 3 at once"


def zone_list(text):
    """The zones of --zones, each checked to be an IANA name (it goes into SQL as a literal)."""
    zones = [name.strip() for name in text.split(",") if name.strip()]
    for name in zones:
        try:
            ZoneInfo(name)
        except (KeyError, ValueError):  # ZoneInfoNotFoundError is a KeyError
            raise ValueError(f"unknown time zone {name!r}") from None
    return zones


def local_midnights(zone, now, days):
    """(F, T) of the dashboard's window of `days` days in `zone`: T the next
    local midnight after `now`, F the local midnight `days` days before it."""
    tz = ZoneInfo(zone)
    tomorrow = now.astimezone(tz).date() + dt.timedelta(days=1)
    return tuple(dt.datetime.combine(day, dt.time(0), tzinfo=tz).astimezone(UTC)
                 for day in (tomorrow - dt.timedelta(days=days), tomorrow))


def iso(moment):
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Measurement:
    """Requests sent at once, and their baseline: one function of a Raw per answer."""

    path: str
    label: str
    requests: tuple  # (path, {parameter: value}) without percentiles
    baselines: tuple


def measurements(zone, now):
    """The zone's three measurements."""
    start, end = local_midnights(zone, now, 30)
    span = {"from": iso(start), "to": iso(end)}
    series = {**span, "bucket": "day", "tz": zone}
    dashboard = Measurement(
        SET_PATH, "30 local days",
        (("/v1/usage/all", span), ("/v1/usage/all/series", series),
         ("/v1/usage/all/series", {**series, "group_by": "model"})),
        (lambda raw: baseline_answer(raw, None, (start, end)),
         lambda raw: baseline_series(raw, None, (start, end), "day", None, zone),
         lambda raw: baseline_series(raw, None, (start, end), "day", "model", zone)))
    start90, end90 = local_midnights(zone, now, 90)
    by_tenant = Measurement(
        "/v1/usage/all/series", "90 local d/tenant",
        (("/v1/usage/all/series", {"from": iso(start90), "to": iso(end90), "bucket": "day", "tz": zone,
                                   "group_by": "tenant_id"}),),
        (lambda raw: baseline_series(raw, None, (start90, end90), "day", "tenant_id", zone),))
    totals = Measurement(
        "/v1/usage/all", "30 local d to now",
        (("/v1/usage/all", {"from": iso(start), "to": iso(now)}),),
        (lambda raw: baseline_answer(raw, None, (start, now)),))
    return [dashboard, by_tenant, totals]


def header():
    print(f"\n{'zone':<16}{'endpoint':<22}{'window':<19}{'percentiles':<13}{'service p50':>13}"
          f"{'service p95':>13}{'baseline p50':>14}{'ratio':>8}")


def _at_once(pool, calls):
    """Run `calls` at once on `pool`; their results."""
    futures = [pool.submit(call) for call in calls]
    return [future.result() for future in futures]


def _answer(pool, m, precision, get):
    """A function sending Measurement `m`'s requests at once through `get`."""
    urls = [f"{path}?" + urlencode({**params, "percentiles": precision}) for path, params in m.requests]
    return lambda: _at_once(pool, [lambda u=u: get(u) for u in urls])


def measure(zones, now, raws, get, timed, pct, repeats, alone=False):
    """{(path, label, precision, zone): (p50, p95, baseline p50)}, printed as a
    table with the zone as a column. `raws`: three Raw connections; `get(path)`
    answers a request; `timed` and `pct` as in bench.py. `alone`: the
    approximate answers only, without a baseline (its p50 None)."""
    results = {}
    precisions = ("approximate",) if alone else PRECISIONS
    header()
    with ThreadPoolExecutor(max_workers=len(raws)) as pool:
        for zone in zones:
            for m in measurements(zone, now):
                answers = [_answer(pool, m, p, get) for p in precisions]
                if alone:
                    b50, service = None, timed(*answers, repeats=repeats)
                else:
                    baseline, *service = timed(
                        lambda: _at_once(pool, [lambda f=f, raw=raw: f(raw) for f, raw in zip(m.baselines, raws)]),
                        *answers, repeats=repeats)
                    b50 = pct(baseline, 50)
                for precision, samples in zip(precisions, service):
                    s50, s95 = pct(samples, 50), pct(samples, 95)
                    results[m.path, m.label, precision, zone] = (s50, s95, b50)
                    print(f"{zone:<16}{m.path:<22}{m.label:<19}{precision:<13}{s50 * 1000:>10.1f} ms"
                          f"{s95 * 1000:>10.1f} ms" + ("" if alone else f"{b50 * 1000:>11.1f} ms{s50 / b50:>8.2f}"))
    return results


def measure_growth(zones, now, gets, timed, pct, repeats):
    """{(path, label, zone): (p50 on the first database, p50 on the second)}
    of the zones' approximate answers, printed with the growth (second /
    first). `gets`: two functions answering a request, one per database.
    The two take turns request by request, as the service and its baseline
    do: measured one after the other, minutes apart, the two scales met
    different loads of the machine, which moved a growth by a fifth."""
    results = {}
    print(f"\n{'zone':<16}{'endpoint':<22}{'window':<19}{'first p50':>12}{'second p50':>13}{'growth':>9}")
    with ThreadPoolExecutor(max_workers=3) as pool:
        for zone in zones:
            for m in measurements(zone, now):
                first, second = (pct(samples, 50) for samples in timed(
                    *(_answer(pool, m, "approximate", get) for get in gets), repeats=repeats))
                results[m.path, m.label, zone] = (first, second)
                print(f"{zone:<16}{m.path:<22}{m.label:<19}{first * 1000:>9.1f} ms{second * 1000:>10.1f} ms"
                      f"{second / first:>8.2f}x")
    return results
