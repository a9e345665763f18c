"""/dashboard in a real browser: Debian's Chromium, driven like a person.

One Chromium serves the whole module (background networking off; it can
reach nothing but the service). Per backend, one database is seeded with
the calls below and served by gunicorn; tests that add calls add them to
`site.records` too. Every expected number is computed here from those
records (tests/expected.py), and compared with what the API answers for the
window the page says it shows. Budgets (BUDGETS) are created through the
service layer; their numbers are computed here too, from the records of
their current period. Outside CI the module is skipped when Chromium is
missing; in CI (.ci/run installs it) that fails.
"""
import datetime as dt
import json
import re
import time
import urllib.request
from decimal import ROUND_HALF_EVEN, Decimal
from urllib.parse import parse_qsl, urlencode, urlsplit
from zoneinfo import ZoneInfo

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys as Key

import browser
from app.budgets import service as budget_service
from app.db import database
from app.models import UsageRollupState
from browser import (after_load, choose, emulate_width, find, in_view, legend, legend_colours, loads,
                     open_signed_out, page_window, plotted, sign_in, sign_in_with_script, stored_key,
                     swatch_colours, table, wait)
from conftest import BACKENDS, Keys, backend_url, build_app, gunicorn
from data import UTC, record, store
from expected import expected_stats, in_window

HOSTILE_MODEL = '<img src=x onerror="window.__pwned=1">'
HOSTILE_ERROR = '<img src=x onerror="window.__pwned=2">'
MARKUP_MODEL = "<b>bold</b> &amp; %{y}"
HOSTILE_BUDGET = "<img src=x onerror=window.__pwned=3>"
OPERATIONS = ["analyze", "summarize", "assign_codes"]
MODELS = ["gpt-4o-mini", "gpt-4o", "claude-haiku"]


def seed_records(today):
    """acme: four calls a day over the last five UTC days, at hours that are
    the next day in Tokyo (16:30, 22:45), one in six an error. globex: the
    hostile names."""
    records = []
    for day in range(1, 6):
        for index, hours in enumerate((1, 9, 16.5, 22.75)):
            n = day * 4 + index
            failed = n % 6 == 0
            records.append(record(
                "acme", today - dt.timedelta(days=day) + dt.timedelta(hours=hours),
                operation=OPERATIONS[n % 3], model=MODELS[n % 2 if day < 4 else 2],
                status="error" if failed else "ok", cost="0" if failed else f"0.{n:02d}{n * 37 % 1000:03d}1",
                duration=200 + 97 * n, input_tokens=1000 + 13 * n, output_tokens=100 + 7 * n))
    at = today - dt.timedelta(days=2, hours=-10)
    records += [
        record("globex", at, model=HOSTILE_MODEL, cost="0.250000", duration=900),
        record("globex", at + dt.timedelta(minutes=5), model=MARKUP_MODEL, cost="0.050000"),
        record("globex", at + dt.timedelta(minutes=9), status="error", error_class=HOSTILE_ERROR, cost="0"),
    ]
    return records


def recent_records(now):
    """acme's calls of the last minutes: its day, week and month budgets count them."""
    return [record("acme", now - dt.timedelta(minutes=3), model="gpt-4o", operation="analyze", cost="0.612345"),
            record("acme", now - dt.timedelta(minutes=2), model="gpt-4o-mini", cost="0.500001"),
            record("acme", now - dt.timedelta(minutes=1), model="gpt-4o", status="error", cost="0")]


# create_budget's arguments, per tenant, oldest first (the API's order).
BUDGETS = {
    "acme": [
        {"name": "monthly cap", "amount_usd": Decimal("5"), "period": "month", "tz": "UTC",
         "thresholds": [50, 80, 100], "enforce": True},
        {"name": "gpt-4o analysis", "amount_usd": Decimal("0.75"), "period": "week", "tz": "Europe/Berlin",
         "model": "gpt-4o", "operation": "analyze"},
        {"name": "daily cap", "amount_usd": Decimal("1.000001"), "period": "day", "tz": "Asia/Kolkata",
         "thresholds": [12.5, 100]},
    ],
    "globex": [
        {"name": HOSTILE_BUDGET, "amount_usd": Decimal("0.5"), "period": "month", "tz": "UTC", "model": MARKUP_MODEL},
    ],
}


class Site:
    """A seeded database served by gunicorn: `base` URL, `keys`, `records`,
    and `seeded_at`, the `now` of its recent records."""

    def __init__(self, app, base, keys, records, seeded_at):
        self.app, self.base, self.keys, self.records, self.seeded_at = app, base, keys, records, seeded_at

    def add(self, records):
        store(self.app, records)
        self.records += records


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    browser.require_chromium(pytest)
    chromium = browser.chromium()
    chromium.downloads = tmp_path_factory.mktemp("downloads")
    chromium.execute_cdp_cmd("Browser.setDownloadBehavior",
                             {"behavior": "allow", "downloadPath": str(chromium.downloads)})
    yield chromium
    chromium.quit()


@pytest.fixture(scope="module", params=BACKENDS)
def site(request, driver, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    url = backend_url(request.param, folder)
    app = build_app(url, folder)
    keys = Keys(app)
    for tenant in ("acme", "globex"):
        keys.tenant(tenant)
    keys.tenant("ops", allows_superusers=True)
    now = dt.datetime.now(UTC)
    records = seed_records(now.replace(hour=0, minute=0, second=0, microsecond=0)) + recent_records(now)
    store(app, records)
    with app.app_context():
        for tenant, budgets in BUDGETS.items():
            for budget in budgets:
                budget_service.create_budget(tenant, **budget)
    with gunicorn(url, workers=2) as base:
        yield Site(app, base, {"acme": keys.key("acme"), "admin": keys.key("ops", superuser=True),
                               "reader": keys.key("ops", scopes=["all:read"]),
                               "writer": keys.key("ops", superuser=True, scopes=["calls:write"])}, records, now)
    if hasattr(database.obj, "close_all"):
        database.obj.close_all()


def api(site, path, key, accept="application/json", method="GET", body=None, **params):
    """The API's answer (JSON with exact decimals, or text), as any other client gets it."""
    query = f"?{urlencode(params, doseq=True)}" if params else ""
    request = urllib.request.Request(
        f"{site.base}{path}{query}", method=method, data=json.dumps(body).encode() if body else None,
        headers={"X-API-Key": key, "Accept": accept, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        text = response.read().decode()
    if accept == "application/json" and text:
        return json.loads(text, parse_float=Decimal)
    return text


def window_params(driver):
    start, end = page_window(driver)
    return {"from": start.isoformat(), "to": end.isoformat()}


def rows(items, name):
    """Table rows as the page writes them: counts with thousands separators,
    money with six decimals. `items` are breakdowns or statistics objects."""
    def numbers(item):
        if "cost_usd" in item:
            return item["cost_usd"], item["input_tokens_total"], item["output_tokens_total"]
        return item["total_cost_usd"], item["input_tokens"]["total"], item["output_tokens"]["total"]

    return [[item[name], f"{item['total_calls']:,}", f"{item['failed_calls']:,}", f"{cost:.6f}",
             f"{tokens_in:,}", f"{tokens_out:,}"] for item in items for cost, tokens_in, tokens_out in [numbers(item)]]


def wall(bucket):
    return bucket["start"][:19].replace("T", " ")


def assert_charts_drawn(driver):
    for chart in ("cost", "calls", "duration", "tokens"):
        assert driver.execute_script(
            "const gd = document.getElementById(arguments[0]);"
            "return gd.querySelectorAll('.main-svg').length > 0 && gd.data.length > 0 && gd.offsetWidth > 0",
            f"chart-{chart}"), chart


def assert_nothing_but_map_styles_blocked(driver):
    """The policy blocked nothing but the map stylesheet plotly.js adds when
    it loads (the dashboard draws no maps): no script, no style of plotly's."""
    violations = driver.execute_script("return window.__violations")
    assert all(v["directive"] == "style-src-elem" and v["source"].endswith("/plotly.min.js")
               for v in violations), violations
    styles = driver.execute_script("return [...document.querySelectorAll('style')].map(s => s.textContent)")
    assert all(style.startswith(".maplibregl") for style in styles)


def test_a_tenant_picks_a_window_and_a_grouping_and_reads_the_apis_numbers(driver, site):
    sign_in(driver, site.base, site.keys["acme"])
    choose(driver, "window", "7d")
    choose(driver, "group-by", "operation")
    start, end = page_window(driver)
    assert end - start >= dt.timedelta(days=7) - dt.timedelta(hours=1)
    answer = api(site, "/v1/usage", site.keys["acme"], **window_params(driver))
    expected = expected_stats(site.records, "acme", start, end)
    assert expected["total_calls"] >= 12
    assert table(driver, "table-operations") == rows(answer["by_operation"], "operation") \
        == rows(expected["by_operation"], "operation")
    assert table(driver, "table-models") == rows(answer["by_model"], "model") == rows(expected["by_model"], "model")
    assert not find(driver, "#tenants-block").is_displayed()
    assert_charts_drawn(driver)
    # The charts hold the series' numbers: cost per operation, calls, percentiles, tokens.
    params = {**window_params(driver), "tz": find(driver, "#tz").get_attribute("value"),
              "bucket": "day", "percentiles": "approximate"}
    grouped = api(site, "/v1/usage/series", site.keys["acme"], group_by="operation", **params)
    drawn = {trace["name"]: dict(zip(trace["x"], trace["y"])) for trace in plotted(driver, "cost")}
    assert drawn == {op: {wall(b): float(g["total_cost_usd"]) if g else None
                          for b in grouped["buckets"]
                          for g in [next((g for g in b["groups"] if g["operation"] == op), None)]}
                     for op in {item["operation"] for item in expected["by_operation"]}}
    series = api(site, "/v1/usage/series", site.keys["acme"], **params)
    calls, failed = plotted(driver, "calls")
    assert calls["x"] == [wall(b) for b in series["buckets"]]
    assert calls["y"] == [b["groups"][0]["total_calls"] for b in series["buckets"]]
    assert failed["y"] == [b["groups"][0]["failed_calls"] for b in series["buckets"]]
    p50, p95 = plotted(driver, "duration")
    assert [y for y in p95["y"] if y is not None] == [
        float(b["groups"][0]["call_duration"]["p95"]) for b in series["buckets"]
        if b["groups"][0]["total_calls"] > b["groups"][0]["failed_calls"]]
    tokens_in, tokens_out = plotted(driver, "tokens")
    assert sum(tokens_in["y"]) == expected["input_tokens"]["total"]
    assert sum(tokens_out["y"]) == expected["output_tokens"]["total"]
    assert "approximate" in find(driver, "#percentiles-note").text
    assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    assert_nothing_but_map_styles_blocked(driver)


def test_a_superuser_sees_every_tenant_and_picks_one(driver, site):
    sign_in(driver, site.base, site.keys["admin"], "?window=7d&group_by=tenant_id")
    everyone = api(site, "/v1/usage/all", site.keys["admin"], **window_params(driver))
    start, end = page_window(driver)
    assert table(driver, "table-tenants") == rows(everyone["tenants"], "tenant_id") \
        == rows([expected_stats(site.records, t, start, end) for t in ("acme", "globex")], "tenant_id")
    total = expected_stats(site.records, None, start, end)
    assert table(driver, "table-tenants", "tfoot") == [["All tenants", *rows([total], "tenant_id")[0][1:]]]
    assert {trace["name"] for trace in plotted(driver, "cost")} == {"acme", "globex"}
    choose(driver, "tenant", "globex")
    globex = expected_stats(site.records, "globex", start, end)
    assert table(driver, "table-models") == rows(globex["by_model"], "model")
    assert "tenant=globex" in driver.current_url
    calls, _ = plotted(driver, "calls")
    assert sum(calls["y"]) == globex["total_calls"] == 3


def test_a_read_only_key_sees_every_tenant_without_a_warning(driver, site):
    sign_in(driver, site.base, site.keys["reader"], "?window=7d&group_by=tenant_id")
    start, end = page_window(driver)
    assert table(driver, "table-tenants") == rows(
        [expected_stats(site.records, t, start, end) for t in ("acme", "globex")], "tenant_id")
    assert "every tenant (all:read)" in find(driver, "#who").text
    assert not find(driver, "#key-warning").is_displayed()


def test_a_key_that_can_write_gets_a_warning_and_one_that_cannot_read_is_refused(driver, site):
    sign_in(driver, site.base, site.keys["admin"], "?window=7d")
    warning = find(driver, "#key-warning")
    assert warning.is_displayed()
    assert "record calls (calls:write) and administer tenants and keys (admin)" in warning.text
    assert "--scope all:read" in warning.text
    open_signed_out(driver, f"{site.base}/dashboard")
    find(driver, "#api-key").send_keys(site.keys["writer"] + Key.ENTER)
    wait(driver, lambda d: find(d, "#sign-in-error").text, "no message for a key that cannot read")
    assert find(driver, "#sign-in-error").text == (
        "This key cannot read statistics (its scopes: calls:write): the dashboard needs a key with "
        "usage:read or all:read.")
    assert stored_key(driver) is None and not find(driver, "#view").is_displayed()


def test_changing_the_time_zone_moves_the_daily_buckets_as_the_api_says(driver, site):
    sign_in(driver, site.base, site.keys["acme"], "?window=7d&bucket=day&tz=UTC&group_by=model")
    days = {}
    for zone in ("UTC", "Asia/Tokyo"):
        if zone != "UTC":
            field = find(driver, "#tz")  # select what is there, type over it, leave the field
            after_load(driver, lambda: field.send_keys(Key.CONTROL, "a", Key.NULL, zone, Key.TAB))
        start, end = page_window(driver)
        series = api(site, "/v1/usage/series", site.keys["acme"], tz=zone, bucket="day",
                     percentiles="approximate", **window_params(driver))
        calls = plotted(driver, "calls")[0]
        assert calls["x"] == [wall(b) for b in series["buckets"]]
        assert calls["y"] == [b["groups"][0]["total_calls"] for b in series["buckets"]]
        expected = {}
        for r in site.records:
            if r["tenant_id"] == "acme" and in_window(r, start, end):
                day = f"{r['timestamp'].astimezone(ZoneInfo(zone)).date()} 00:00:00"
                expected[day] = expected.get(day, 0) + 1
        days[zone] = {x: y for x, y in zip(calls["x"], calls["y"]) if y}
        assert days[zone] == expected
        assert f"tz={zone.replace('/', '%2F')}" in driver.current_url
    assert days["UTC"] != days["Asia/Tokyo"]


def test_names_written_by_tenants_are_shown_as_text_and_run_nothing(driver, site):
    sign_in(driver, site.base, site.keys["admin"], "?window=7d&group_by=model")
    names = legend(driver)
    assert HOSTILE_MODEL in names and MARKUP_MODEL in names
    models = [row[0] for row in table(driver, "table-models")]
    assert HOSTILE_MODEL in models and MARKUP_MODEL in models
    # Hover the hostile model's bar: the hover label shows the name as it is.
    index = [trace["name"] for trace in plotted(driver, "cost")].index(
        HOSTILE_MODEL.replace("<", "&lt;").replace(">", "&gt;"))
    bar = [b for b in driver.find_elements(
        "css selector", f"#chart-cost .barlayer .trace:nth-child({index + 1}) .point path")
        if b.size["height"] > 0][0]
    ActionChains(driver).move_to_element(bar).perform()
    wait(driver, lambda d: HOSTILE_MODEL in d.execute_script(
        "const layer = document.querySelector('#chart-cost .hoverlayer'); return layer ? layer.textContent : ''"),
        "no hover label with the model's name")
    choose(driver, "group-by", "error_class")
    assert HOSTILE_ERROR in legend(driver)
    assert driver.execute_script("return window.__pwned") is None
    assert driver.execute_script("return document.images.length") == 0
    assert driver.execute_script("return document.querySelectorAll('script:not([src])').length") == 0
    assert_nothing_but_map_styles_blocked(driver)


def fnv1a(name):
    """The 32-bit FNV-1a hash of a name's UTF-8 bytes, as colours.js computes it."""
    value = 0x811C9DC5
    for byte in name.encode():
        value = ((value ^ byte) * 0x01000193) % 2**32
    return value


def palette(driver):
    """colours.js's palette, as the rgb() colours a browser draws."""
    return driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        import('/dashboard/static/colours.js').then(module => done(module.PALETTE.map(hex => {
          const probe = document.createElement('span');
          probe.style.color = hex;
          document.body.append(probe);
          const rgb = getComputedStyle(probe).color;
          probe.remove();
          return rgb;
        })));""")


def assert_name_colours(driver, colours):
    """Each name's colour is the palette's colour of its hash: nothing else."""
    shades = palette(driver)
    assert len(shades) == len(set(shades)) == 12
    assert colours == {name: shades[fnv1a(name) % len(shades)] for name in colours}


def test_a_name_has_one_colour_in_every_chart_table_view_and_reload(driver, site):
    sign_in(driver, site.base, site.keys["admin"], "?window=7d&tz=UTC&group_by=model")
    everyone = legend_colours(driver)
    assert {"gpt-4o-mini", "gpt-4o", "claude-haiku", HOSTILE_MODEL, MARKUP_MODEL} <= set(everyone)
    assert swatch_colours(driver, "table-models") == everyone  # the table says what the chart says
    assert_name_colours(driver, everyone)
    order = list(everyone)
    # Another view, with the names in other places: each keeps its colour.
    choose(driver, "tenant", "globex")
    globex = legend_colours(driver)
    assert any(order.index(name) != index for index, name in enumerate(globex)), \
        "the names kept their places: this view tells nothing"
    assert globex == {name: everyone[name] for name in globex}
    assert swatch_colours(driver, "table-models") == globex
    # After a reload (the key is in the tab): the same colours.
    driver.refresh()
    wait(driver, lambda d: loads(d) >= 1, "the page did not load again")
    assert legend_colours(driver) == globex and swatch_colours(driver, "table-models") == globex
    # Operations and tenants too; a tenant's colour is the same in both its places.
    choose(driver, "tenant", "")
    choose(driver, "group-by", "operation")
    operations = legend_colours(driver)
    assert set(operations) == set(OPERATIONS) and swatch_colours(driver, "table-operations") == operations
    assert_name_colours(driver, operations)
    choose(driver, "group-by", "tenant_id")
    tenants = legend_colours(driver)
    assert set(tenants) == {"acme", "globex"} and swatch_colours(driver, "table-tenants") == tenants
    assert_name_colours(driver, tenants)
    assert_nothing_but_map_styles_blocked(driver)  # the swatches' colours are no inline style


TIME = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}"


def test_every_time_on_the_page_is_written_one_way(driver, site):
    zone = ZoneInfo("Asia/Kolkata")
    sign_in(driver, site.base, site.keys["acme"], "?window=7d&tz=Asia/Kolkata&bucket=day&group_by=model")
    start, end = (moment.astimezone(zone) for moment in page_window(driver))
    assert find(driver, "#window-shown").text == f"From {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} (Asia/Kolkata)."
    updated = re.fullmatch(rf"Updated at ({TIME}:\d{{2}})\.", find(driver, "#status").text)
    assert updated, find(driver, "#status").text
    now = dt.datetime.now(zone).replace(tzinfo=None)
    assert abs(dt.datetime.fromisoformat(updated[1]) - now) < dt.timedelta(minutes=2)
    # The charts' axes: the date over the time, as the page writes them.
    for chart in ("cost", "calls", "duration", "tokens"):
        ticks = driver.execute_script(
            "return [...document.querySelectorAll(arguments[0])].map(t => "
            "[...t.querySelectorAll('tspan.line')].map(line => line.textContent).join(' ') || t.textContent)",
            f"#chart-{chart} .xtick text")
        assert ticks and all(re.fullmatch(TIME, tick) for tick in ticks), (chart, ticks)
    # A hover label's time.
    bar = [b for b in driver.find_elements("css selector", "#chart-calls .barlayer .trace:first-child .point path")
           if b.size["height"] > 0][0]
    ActionChains(driver).move_to_element(bar).perform()
    wait(driver, lambda d: re.search(TIME, d.execute_script(
        "const layer = document.querySelector('#chart-calls .hoverlayer'); return layer ? layer.textContent : ''")),
        "no hover label with the bucket's time")
    # The budgets' periods, each in its own zone (which the cell names).
    periods = [row[1].split("\n")[1] for row in table(driver, "table-budgets", text="innerText")]
    assert periods and all(re.fullmatch(f"{TIME} – {TIME}", period) for period in periods), periods
    # The calls list: its title, and each call to the second.
    find(driver, "#table-models tbody tr").click()
    wait(driver, lambda d: table(d, "table-calls") and find(d, "#calls-note").text not in ("", "Loading…"))
    assert find(driver, "#calls-title-detail").text.endswith(
        f" · {start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} (Asia/Kolkata)")
    assert all(re.fullmatch(f"{TIME}:\\d{{2}}", row[0]) for row in table(driver, "table-calls"))
    # A custom window's ends, in the same format, and typed in it (a date alone: its midnight).
    choose(driver, "window", "custom")
    assert [find(driver, f"#{end_}").get_attribute("value") for end_ in ("from", "to")] == [
        f"{start:%Y-%m-%d %H:%M}", f"{end:%Y-%m-%d %H:%M}"]
    field = find(driver, "#to")
    day = (end - dt.timedelta(days=1)).date()
    after_load(driver, lambda: field.send_keys(Key.CONTROL, "a", Key.NULL, f"{day}", Key.TAB))
    assert page_window(driver)[1] == dt.datetime.combine(day, dt.time(), zone)
    assert field.get_attribute("value") == f"{day} 00:00"
    after_load(driver, lambda: field.send_keys(Key.CONTROL, "a", Key.NULL, "12/01/2026, 12:00 AM", Key.TAB))
    assert find(driver, "#error").text.startswith("Write the ends of the custom window as 2026-11-01 00:00")


def test_the_key_stays_in_session_storage_and_headers_only(driver, site):
    key = site.keys["admin"]
    sign_in(driver, site.base, key, "?window=30d")
    choose(driver, "group-by", "operation")
    choose(driver, "tenant", "acme")
    assert stored_key(driver) == key
    assert key not in driver.current_url and "key" not in driver.current_url
    assert driver.execute_script("return document.cookie") == "" and driver.get_cookies() == []
    assert driver.execute_script("return localStorage.length") == 0
    requested = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert any("/v1/usage" in url for url in requested)
    assert all(url.startswith(site.base + "/") and key not in url for url in requested), requested
    assert find(driver, "#api-key").get_attribute("value") == ""
    find(driver, "#sign-out").click()
    wait(driver, lambda d: find(d, "#sign-in").is_displayed())
    assert stored_key(driver) is None and not find(driver, "#view").is_displayed()


def test_a_wrong_or_revoked_key_returns_to_the_sign_in_form(driver, site):
    open_signed_out(driver, f"{site.base}/dashboard")
    find(driver, "#api-key").send_keys("usk_0123456789abcdef_" + "A" * 43 + Key.ENTER)  # a key's shape
    wait(driver, lambda d: find(d, "#sign-in-error").text, "no message for a wrong key")
    assert find(driver, "#sign-in-error").text == "The API key is unknown or revoked."
    created = api(site, "/v1/tenants/acme/keys", site.keys["admin"], method="POST", body={"name": "revoke me"})
    sign_in(driver, site.base, created["key"])
    assert find(driver, "#view").is_displayed() and stored_key(driver) == created["key"]
    api(site, f"/v1/keys/{created['key_id']}", site.keys["admin"], method="DELETE")
    find(driver, "#refresh").click()
    wait(driver, lambda d: find(d, "#sign-in").is_displayed(), "a revoked key kept the view")
    assert find(driver, "#sign-in-error").text == "The API key is unknown or revoked."
    assert stored_key(driver) is None and not find(driver, "#view").is_displayed()


NOT_A_KEY = ("That is not an API key: keys start with usk_, then 16 hexadecimal digits, an underscore and a "
             "43-character secret. Check that it was copied whole.")


def test_text_that_is_not_shaped_like_a_key_is_named_and_never_sent(driver, site):
    open_signed_out(driver, f"{site.base}/dashboard")
    how = find(driver, "#key-how").text
    assert "flask --app wsgi keys create --tenant <tenant> --name dashboard --scope usage:read" in how
    assert "or ask an operator" in how
    key = site.keys["acme"]
    key_id = key.split("_")[1]
    for text in (key[:-1], key + "x", key_id, f"usk_{key_id}", "usk_0123456789abcdef_wrong", "hunter2",
                 key.replace("usk_", "usk-"), key.upper()):
        field = find(driver, "#api-key")
        field.send_keys(text + Key.ENTER)
        wait(driver, lambda d: find(d, "#sign-in-error").text == NOT_A_KEY, f"no not-a-key message for {text!r}")
        assert field.get_attribute("value") == ""
        driver.execute_script("document.getElementById('sign-in-error').textContent = ''")
    # Nothing was sent, and nothing kept.
    assert driver.execute_script(
        "return performance.getEntriesByType('resource').filter(e => e.name.includes('/v1/')).length") == 0
    assert stored_key(driver) is None and not find(driver, "#view").is_displayed()
    # Pasted with spaces around it, a key is still a key.
    after_load(driver, lambda: find(driver, "#api-key").send_keys(f"  {key} " + Key.ENTER))
    assert find(driver, "#view").is_displayed() and stored_key(driver) == key


# The page's 60 s auto-refresh, run every half second for this test only.
FAST_AUTO_REFRESH = """
const realSetInterval = window.setInterval;
window.setInterval = (callback, ms, ...rest) => realSetInterval(callback, ms === 60000 ? 500 : ms, ...rest);
"""


def test_auto_refresh_costs_a_304_and_no_redraw_until_the_numbers_change(driver, site):
    shim = driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": FAST_AUTO_REFRESH})
    try:
        sign_in(driver, site.base, site.keys["admin"], "?window=7d&auto=1")
        assert find(driver, "#auto-refresh").is_selected()
        draws = find(driver, "#chart-cost").get_attribute("data-draws")
        wait(driver, lambda d: "no change (304)" in find(d, "#status").text, "no 304 from the auto-refresh")
        assert find(driver, "#chart-cost").get_attribute("data-draws") == draws
        statuses = driver.execute_script(
            "return performance.getEntriesByType('resource').filter(e => e.name.includes('/v1/usage'))"
            ".slice(-3).map(e => e.responseStatus)")
        assert statuses == [304, 304, 304]
        start, end = page_window(driver)
        site.add([record("globex", min(dt.datetime.now(UTC), end - dt.timedelta(minutes=1)),
                         cost="0.123456", model="gpt-4o")])
        wait(driver, lambda d: find(d, "#chart-cost").get_attribute("data-draws") != draws, "no redraw")
        total = expected_stats(site.records, None, start, end)
        assert table(driver, "table-tenants", "tfoot")[0][1] == f"{total['total_calls']:,}"
    finally:
        driver.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": shim["identifier"]})


EMPTY_WINDOW = "?window=custom&from=2001-01-01T00:00&to=2001-01-08T00:00&bucket=hour"


def calls_requests(driver):
    """The call-log requests of the page: path and parameters of each."""
    urls = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    return [(urlsplit(url).path, sorted(parse_qsl(urlsplit(url).query))) for url in urls
            if urlsplit(url).path.startswith("/v1/") and urlsplit(url).path.endswith("/calls")]


def test_an_empty_window_says_where_the_calls_are(driver, site):
    tokyo = ZoneInfo("Asia/Tokyo")
    sign_in(driver, site.base, site.keys["acme"], EMPTY_WINDOW + "&tz=Asia/Tokyo")
    assert find(driver, "#empty").is_displayed() and find(driver, "#empty-text").text == "No calls in this window."
    assert not find(driver, "#results").is_displayed()
    latest = max(r["timestamp"] for r in site.records if r["tenant_id"] == "acme").astimezone(tokyo)
    assert find(driver, "#empty-latest").text == f"The latest call is from {latest:%Y-%m-%d %H:%M}."
    # One request: the newest call, whatever its date.
    assert calls_requests(driver) == [("/v1/usage/calls", [("limit", "1")])]
    button = find(driver, "#empty-show")
    assert button.text == "Show the 30 days before it"
    after_load(driver, button.click)
    end = latest.replace(hour=0, minute=0, second=0, microsecond=0) + dt.timedelta(days=1)
    start, shown_end = page_window(driver)
    assert (start, shown_end) == (end - dt.timedelta(days=30), end)
    assert "window=custom" in driver.current_url and "bucket=day" in driver.current_url
    assert not find(driver, "#empty").is_displayed() and find(driver, "#results").is_displayed()
    assert table(driver, "table-models") == rows(expected_stats(site.records, "acme", start, end)["by_model"], "model")
    assert find(driver, "#from").get_attribute("value") == f"{end - dt.timedelta(days=30):%Y-%m-%d} 00:00"


def test_an_empty_window_of_every_tenant_looks_in_the_chosen_tenant(driver, site):
    sign_in(driver, site.base, site.keys["reader"], EMPTY_WINDOW + "&tz=UTC&tenant=globex")
    latest = max(r["timestamp"] for r in site.records if r["tenant_id"] == "globex").astimezone(UTC)
    assert find(driver, "#empty-latest").text == f"The latest call is from {latest:%Y-%m-%d %H:%M}."
    assert calls_requests(driver) == [("/v1/usage/all/calls", [("limit", "1"), ("tenant_id", "globex")])]
    # All tenants: the newest call of any.
    choose(driver, "tenant", "")
    latest = max(r["timestamp"] for r in site.records).astimezone(UTC)
    assert find(driver, "#empty-latest").text == f"The latest call is from {latest:%Y-%m-%d %H:%M}."
    assert calls_requests(driver)[-1] == ("/v1/usage/all/calls", [("limit", "1")])
    # A tenant with no calls at all: nothing to show, no button.
    sign_in(driver, site.base, site.keys["reader"], EMPTY_WINDOW + "&tz=UTC&tenant=ops")
    assert find(driver, "#empty-latest").text == "No calls are stored for this view at all yet."
    assert not find(driver, "#empty-show").is_displayed()


def test_without_rollups_the_percentiles_are_exact_and_the_page_says_why(driver, site):
    with site.app.app_context():
        UsageRollupState.update(needs_rebuild=True).execute()
    try:
        sign_in(driver, site.base, site.keys["acme"], "?window=7d")
        note = find(driver, "#percentiles-note").text
        assert "exact" in note and "flask --app wsgi rollups rebuild" in note
        assert_charts_drawn(driver)
        assert not find(driver, "#error").is_displayed()
    finally:
        with site.app.app_context():
            UsageRollupState.update(needs_rebuild=False).execute()


def downloaded(driver, name):
    path = driver.downloads / name
    wait(driver, lambda d: path.exists() and path.stat().st_size > 0, f"{name} was not downloaded")
    time.sleep(0.2)  # let Chromium finish writing
    return path.read_bytes().decode("utf-8")  # CRLF line ends kept


def test_download_csv_saves_the_apis_csv(driver, site):
    for old in driver.downloads.iterdir():  # the other backend's files have the same names
        old.unlink()
    sign_in(driver, site.base, site.keys["admin"], "?window=7d&tz=UTC")
    params = window_params(driver)
    find(driver, 'button[data-csv="tenants"]').click()
    expected = api(site, "/v1/usage/all", site.keys["admin"], accept="text/csv", percentiles="approximate", **params)
    start, end = page_window(driver)
    name = f"usage_all_{start:%Y%m%dT%H%M%SZ}_{end:%Y%m%dT%H%M%SZ}.csv"
    assert downloaded(driver, name) == expected
    find(driver, 'button[data-csv="operation"]').click()
    expected = api(site, "/v1/usage/all/series", site.keys["admin"], accept="text/csv", bucket="day", tz="UTC",
                   group_by="operation", percentiles="approximate", **params)
    assert expected.count("\n") > 3
    name = f"usage-series_all_day_by-operation_{start:%Y%m%dT%H%M%SZ}_{end:%Y%m%dT%H%M%SZ}.csv"
    assert downloaded(driver, name) == expected


def column_in_view(driver, table_id, label):
    """Whether the column `label` of a table (its header and every cell) is wholly in view."""
    index = table(driver, table_id, "thead")[0].index(label)
    return in_view(driver, f"#{table_id} tr > :nth-child({index + 1})")


def assert_stacked(driver):
    """The shown controls are one above the other, at one left edge, within the width."""
    boxes = driver.execute_script(
        "return [...document.querySelectorAll('#controls .control')].filter(c => c.offsetParent)"
        ".map(c => c.getBoundingClientRect()).map(b => [b.left, b.top, b.bottom, b.right])")
    assert len(boxes) >= 5 and len({round(left) for left, *_ in boxes}) == 1, boxes
    assert all(above[2] <= below[1] for above, below in zip(boxes, boxes[1:])), boxes
    assert all(right <= 390 for *_, right in boxes), boxes


def test_keyboard_labels_and_a_narrow_screen(driver, site):
    emulate_width(driver, 390)  # a phone's width: a headless window is never narrower than 500 px
    try:
        open_signed_out(driver, f"{site.base}/dashboard")  # the sign-in form and its command line fit
        assert find(driver, "#key-how").is_displayed()
        assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        sign_in(driver, site.base, site.keys["acme"], "?window=7d")  # typed, then Enter
        assert driver.execute_script("return innerWidth") == 390
        assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        assert_charts_drawn(driver)
        assert driver.execute_script(
            "return [...document.querySelectorAll('.chart')].every(c => c.getBoundingClientRect().right <= innerWidth)")
        assert_stacked(driver)
        # Each table keeps its names and its cost in view, without scrolling sideways.
        for table_id, name in (("table-operations", "Operation"), ("table-models", "Model")):
            assert column_in_view(driver, table_id, name) and column_in_view(driver, table_id, "Cost (USD)"), table_id
        for label in ("Budget", "Spent (USD)"):
            assert column_in_view(driver, "table-budgets", label), label
        assert find(driver, ".narrow-only").is_displayed()
        unlabelled = driver.execute_script(
            "return [...document.querySelectorAll('input, select')].filter(e => e.labels.length === 0).map(e => e.id)")
        assert unlabelled == []
        header = find(driver, "#table-models th:nth-child(2) button")  # Calls
        header.send_keys(Key.ENTER)
        calls = [int(row[1].replace(",", "")) for row in table(driver, "table-models")]
        assert calls == sorted(calls, reverse=True)
        assert find(driver, "#table-models th:nth-child(2)").get_attribute("aria-sort") == "descending"
        find(driver, "#table-models th:nth-child(2) button").send_keys(Key.ENTER)
        calls = [int(row[1].replace(",", "")) for row in table(driver, "table-models")]
        assert calls == sorted(calls)
        find(driver, "#table-models tbody tr").click()
        wait(driver, lambda d: table(d, "table-calls") and find(d, "#calls-note").text not in ("", "Loading…"))
        assert column_in_view(driver, "table-calls", "Time") and column_in_view(driver, "table-calls", "Cost (USD)")
        # Every tenant, a custom window (two more controls), and its longest names.
        sign_in(driver, site.base, site.keys["admin"], "?window=7d&tz=UTC&tenant=globex")
        choose(driver, "window", "custom")
        assert_stacked(driver)
        for table_id, name in (("table-tenants", "Tenant"), ("table-models", "Model")):
            assert column_in_view(driver, table_id, name) and column_in_view(driver, table_id, "Cost (USD)"), table_id
        assert column_in_view(driver, "table-budgets", "Spent (USD)")
        [row] = [tr for tr in driver.find_elements("css selector", "#table-models tbody tr")
                 if tr.find_element("css selector", "td").text == HOSTILE_MODEL]
        row.click()
        calls_settled(driver, 1)
        assert table(driver, "table-calls")[0][3] == HOSTILE_MODEL
        for label in ("Time", "Tenant", "Model", "Cost (USD)"):
            assert column_in_view(driver, "table-calls", label), label
        assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        emulate_width(driver, None)
    # A wide screen shows every column.
    sign_in(driver, site.base, site.keys["acme"], "?window=7d")
    assert table(driver, "table-models", "thead")[0][-2:] == ["Input tokens", "Output tokens"]
    assert find(driver, "#table-models th:last-child").is_displayed()
    assert not find(driver, ".narrow-only").is_displayed()


def test_the_time_zone_is_the_browsers_until_one_is_chosen(driver, site):
    driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "America/St_Johns"})
    try:
        sign_in(driver, site.base, site.keys["acme"])
        assert find(driver, "#tz").get_attribute("value") == "America/St_Johns"
        assert "tz=America%2FSt_Johns" in driver.current_url
        assert find(driver, "#window-shown").text.endswith("(America/St_Johns).")
    finally:
        driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": ""})


# The budgets block.

def current_period(budget, now):
    """[start, end) of the budget's period holding `now`, aware in its zone
    (wall-clock arithmetic: a zone's offset is its own at each end)."""
    zone = ZoneInfo(budget["tz"])
    start = now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    if budget["period"] == "day":
        return start, start + dt.timedelta(days=1)
    if budget["period"] == "week":
        start -= dt.timedelta(days=start.weekday())
        return start, start + dt.timedelta(days=7)
    start = start.replace(day=1)
    return start, (start + dt.timedelta(days=32)).replace(day=1)


def spent_in(records, tenant, budget, start, end):
    """The cost of the tenant's ok calls of [start, end) that match the budget's filters."""
    return sum((r["cost_usd"] for r in records
                if r["tenant_id"] == tenant and r["status"] == "ok" and in_window(r, start, end)
                and budget.get("model") in (None, r["model"]) and budget.get("operation") in (None, r["operation"])),
               Decimal(0))


def percent(value):
    """A threshold as the page writes it: 80%, 12.5%."""
    return f"{Decimal(value).normalize():f}%"


def details(budget):
    """The second line of a budget's name: enforced, its filters."""
    return " · ".join((["enforced"] if budget.get("enforce") else [])
                      + [f"{name} {budget[name]}" for name in ("model", "operation") if budget.get(name)])


def budget_row(budget, tenant, every_tenant, start, end, spent, used, crossed):
    """A row of the budgets table as a person reads it (innerText), but its projection."""
    return [budget["name"] + (f"\n{details(budget)}" if details(budget) else ""), *([tenant] if every_tenant else []),
            f"{budget['period']} in {budget['tz']}\n{start} – {end}", f"{spent:.6f}", f"{budget['amount_usd']:.6f}",
            f"{used:.2f}%", ", ".join(percent(t) for t in crossed) or "none"]


def expected_budget_rows(records, tenant, now, every_tenant=False):
    """The tenant's budget rows, from the records alone."""
    result = []
    for budget in BUDGETS[tenant]:
        start, end = current_period(budget, now)
        spent, amount = spent_in(records, tenant, budget, start, end), budget["amount_usd"]
        crossed = [t for t in budget.get("thresholds", [80, 100]) if spent * 100 >= Decimal(str(t)) * amount]
        result.append(budget_row(budget, tenant, every_tenant, f"{start:%Y-%m-%d %H:%M}", f"{end:%Y-%m-%d %H:%M}",
                                 spent, (spent * 100 / amount).quantize(Decimal("0.01"), ROUND_HALF_EVEN), crossed))
    return result


def api_budget_rows(answer, every_tenant=False):
    """The same rows from the API's answer."""
    def local(rfc3339):
        return rfc3339[:16].replace("T", " ")

    return [budget_row(b, b["tenant_id"], every_tenant, local(b["status"]["period_start"]),
                       local(b["status"]["period_end"]), b["status"]["spent_usd"], b["status"]["percent_used"],
                       b["status"]["thresholds_crossed"]) for b in answer]


def budget_rows(driver):
    """The page's budget rows (innerText) without the projected column; and
    per row its projected (Decimal) and its meter's value and maximum."""
    cells = table(driver, "table-budgets", text="innerText")
    head = table(driver, "table-budgets", "thead", text="innerText")[0]
    projected = head.index("Projected (USD)")
    meters = driver.execute_script(
        "return [...document.querySelectorAll('#table-budgets tbody tr')].map(tr => "
        "[...tr.querySelectorAll('meter')].map(m => [m.value, m.max]))")
    return ([[text.strip() for i, text in enumerate(row) if i != projected] for row in cells],
            [Decimal(row[projected]) for row in cells], meters, head)


def assert_projections(projected, records, tenant, before, after):
    """spent × period / elapsed (6 decimals), with `now` somewhere in [before, after]."""
    for shown, budget in zip(projected, BUDGETS[tenant]):
        start, end = current_period(budget, before)
        spent = spent_in(records, tenant, budget, start, end)
        if after - start < dt.timedelta(minutes=1):
            assert shown == spent
            continue
        length = (end - start) / dt.timedelta(microseconds=1)
        lowest = spent * Decimal(length) / Decimal((after - start) / dt.timedelta(microseconds=1))
        highest = spent * Decimal(length) / Decimal(max(before - start, dt.timedelta(minutes=1))
                                                    / dt.timedelta(microseconds=1))
        assert lowest - Decimal("0.000001") <= shown <= highest + Decimal("0.000001"), (budget["name"], shown)


def test_a_tenant_sees_its_budgets_with_the_apis_numbers(driver, site):
    before = dt.datetime.now(UTC)
    answer_before = api(site, "/v1/budgets", site.keys["acme"])
    sign_in(driver, site.base, site.keys["acme"], "?window=7d")
    answer = api(site, "/v1/budgets", site.keys["acme"])
    after = dt.datetime.now(UTC)
    assert all(current_period(b, before) == current_period(b, after) for b in BUDGETS["acme"]), \
        "a budget's period turned during the test: run it again"
    shown, projected, meters, head = budget_rows(driver)
    assert head == ["Budget", "Period", "Spent (USD)", "Amount (USD)", "Used", "Projected (USD)",
                    "Thresholds crossed"]
    assert shown == api_budget_rows(answer) == expected_budget_rows(site.records, "acme", after)
    daily_start, _ = current_period(BUDGETS["acme"][2], before)
    if min(r["timestamp"] for r in recent_records(site.seeded_at)) >= daily_start:
        # Unless a Kolkata day (18:30 UTC) began since the site stored its calls of the last minutes.
        assert Decimal(shown[2][2]) > 1, "the daily cap counts the recent calls"
    assert shown[2][-1] == "12.5%, 100%"
    # The projection falls while nothing is spent: the page's lies between two of the API's.
    assert all(a["status"]["projected_usd"] <= p <= b["status"]["projected_usd"]
               for a, p, b in zip(answer, projected, answer_before))
    assert_projections(projected, site.records, "acme", before, after)
    assert meters == [[[float(b["status"]["spent_usd"]), float(max(b["status"]["spent_usd"], b["amount_usd"]))]]
                      for b in answer]
    assert "whatever the window above" in find(driver, "#budgets-block").text
    assert not find(driver, "#budgets-note").is_displayed()


def test_an_every_tenant_key_sees_the_selected_tenants_budgets(driver, site):
    sign_in(driver, site.base, site.keys["reader"], "?window=7d")
    note = find(driver, "#budgets-note")
    assert note.text == "Choose a tenant to see its budgets."
    assert not find(driver, "#table-budgets").is_displayed()
    choose(driver, "tenant", "acme")
    answer = api(site, "/v1/tenants/acme/budgets", site.keys["reader"])
    shown, _, _, head = budget_rows(driver)
    assert head[:3] == ["Budget", "Tenant", "Period"]
    assert shown == api_budget_rows(answer, every_tenant=True) \
        == expected_budget_rows(site.records, "acme", dt.datetime.now(UTC), every_tenant=True)
    assert not note.is_displayed()
    choose(driver, "tenant", "globex")
    assert [row[:2] for row in budget_rows(driver)[0]] == [[f"{HOSTILE_BUDGET}\nmodel {MARKUP_MODEL}", "globex"]]
    # A tenant without budgets (and without calls): both blocks say so.
    sign_in(driver, site.base, site.keys["reader"], "?window=7d&tenant=ops")
    assert find(driver, "#budgets-note").text == "No budgets for this view."
    assert find(driver, "#empty").is_displayed()


def test_a_hostile_budget_name_is_shown_as_text_and_runs_nothing(driver, site):
    sign_in(driver, site.base, site.keys["admin"], "?window=7d&tenant=globex")
    cell = find(driver, "#table-budgets tbody td")
    assert cell.text == f"{HOSTILE_BUDGET}\nmodel {MARKUP_MODEL}"
    assert driver.execute_script(
        "return [...document.querySelectorAll('#table-budgets *')].map(e => e.tagName)"
        ".filter(t => !['THEAD', 'TBODY', 'TR', 'TH', 'TD', 'SPAN', 'METER'].includes(t))") == []
    assert driver.execute_script("return window.__pwned") is None
    assert driver.execute_script("return document.images.length") == 0
    assert_nothing_but_map_styles_blocked(driver)


# Every budgets request answered 403 by the page's own fetch, before any script of the page runs.
REFUSE_BUDGETS = """
const realFetch = window.fetch;
const refused = (url) => String(url).startsWith("/v1/") && String(url).endsWith("/budgets");
window.fetch = (url, init) => refused(url) ? Promise.resolve(new Response(
  JSON.stringify({code: 403, status: "Forbidden", message: "This key may not read budgets."}),
  {status: 403, headers: {"Content-Type": "application/json"}})) : realFetch(url, init);
"""


def test_the_page_draws_when_the_budgets_request_fails(driver, site):
    sign_in_with_script(driver, site.base, site.keys["acme"], "?window=7d", REFUSE_BUDGETS)
    assert find(driver, "#budgets-note").text == "This key may not read budgets."
    assert not find(driver, "#table-budgets").is_displayed()
    assert_charts_drawn(driver)
    assert table(driver, "table-models") and not find(driver, "#error").is_displayed()
    assert find(driver, "#status").text.startswith("Updated at")
    # The network refuses it: the same.
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/v1/*budgets"]})
    try:
        sign_in(driver, site.base, site.keys["acme"], "?window=7d")
        assert find(driver, "#budgets-note").text.startswith("The budgets could not be read (")
        assert_charts_drawn(driver)
        assert table(driver, "table-models") and not find(driver, "#error").is_displayed()
    finally:
        driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
        driver.execute_cdp_cmd("Network.disable", {})
    # Back: the next load shows the budgets again.
    after_load(driver, lambda: find(driver, "#refresh").click())
    assert len(budget_rows(driver)[0]) == len(BUDGETS["acme"])
    assert not find(driver, "#budgets-note").is_displayed()


def test_auto_refresh_updates_the_budgets(driver, site):
    shim = driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": FAST_AUTO_REFRESH})
    try:
        sign_in(driver, site.base, site.keys["acme"], "?window=7d&auto=1")
        spent = [row[2] for row in budget_rows(driver)[0]]
        site.add([record("acme", dt.datetime.now(UTC) - dt.timedelta(seconds=5), model="gpt-4o-mini",
                         cost="0.100000")])
        wait(driver, lambda d: [row[2] for row in budget_rows(d)[0]] != spent, "the budgets were not refreshed")
        wait(driver, lambda d: budget_rows(d)[0] == expected_budget_rows(site.records, "acme", dt.datetime.now(UTC)))
    finally:
        driver.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": shim["identifier"]})


# The calls block: the call log behind a table row or a chart's bucket.

# Pages of 3 calls instead of 50, for the test that reads several.
SMALL_CALL_PAGES = """
const fetchAll = window.fetch;
window.fetch = (url, init) => fetchAll(String(url).replace(/([?&])limit=50(&|$)/, "$1limit=3$2"), init);
"""


def call_rows(records, keep, every_tenant):
    """The calls block's rows (UTC view) of the records `keep` keeps, newest first."""
    chosen = sorted((r for r in records if keep(r)), key=lambda r: r["timestamp"], reverse=True)
    return [[f"{r['timestamp'].astimezone(UTC):%Y-%m-%d %H:%M:%S}", *([r["tenant_id"]] if every_tenant else []),
             r["operation"], r["model"], "ok" if r["status"] == "ok" else f"error: {r['error_class']}",
             f"{r['call_duration_ms']:,}", f"{r['input_tokens']:,}", f"{r['output_tokens']:,}",
             f"{Decimal(r['cost_usd']):.6f}", r["call_id"]] for r in chosen]


def calls_settled(driver, count):
    """The calls block shows `count` rows and is not loading."""
    wait(driver, lambda d: len(table(d, "table-calls")) == count
         and find(d, "#calls-note").text not in ("", "Loading…"), f"the calls block did not show {count} calls")


def test_a_table_row_lists_its_calls_a_page_at_a_time(driver, site):
    sign_in_with_script(driver, site.base, site.keys["acme"], "?window=7d&tz=UTC&group_by=model", SMALL_CALL_PAGES)
    start, end = page_window(driver)
    expected = call_rows(site.records, lambda r: r["tenant_id"] == "acme" and r["model"] == "gpt-4o"
                         and in_window(r, start, end), every_tenant=False)
    assert len(expected) > 6
    assert not find(driver, "#calls-block").is_displayed()
    [row] = [tr for tr in driver.find_elements("css selector", "#table-models tbody tr")
             if tr.find_element("css selector", "td").text == "gpt-4o"]
    row.click()
    shown = 3
    calls_settled(driver, shown)
    while shown < len(expected):
        find(driver, "#calls-more").click()
        shown = min(shown + 3, len(expected))
        calls_settled(driver, shown)
    assert table(driver, "table-calls") == expected
    assert not find(driver, "#calls-more").is_displayed()
    assert find(driver, "#calls-note").text == f"{len(expected)} calls."
    assert find(driver, "#calls-title-detail").text == (
        f"model gpt-4o · {start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} (UTC)")
    assert table(driver, "table-calls", "thead")[0][:3] == ["Time", "Operation", "Model"]
    # With the keyboard: Enter on an operation's row lists its calls instead.
    operation_row = find(driver, "#table-operations tbody tr")
    operation = operation_row.find_element("css selector", "td").text
    operation_row.send_keys(Key.ENTER)
    wanted = call_rows(site.records, lambda r: r["tenant_id"] == "acme" and r["operation"] == operation
                       and in_window(r, start, end), every_tenant=False)
    calls_settled(driver, min(3, len(wanted)))  # the page's fetch still asks for pages of 3
    assert table(driver, "table-calls") == wanted[:3]
    find(driver, "#calls-close").click()
    assert not find(driver, "#calls-block").is_displayed()


def test_a_bucket_lists_its_calls_and_tenants_text_stays_text(driver, site):
    sign_in(driver, site.base, site.keys["admin"], "?window=7d&tz=UTC&bucket=day&group_by=model&tenant=globex")
    bars = [bar for bar in driver.find_elements("css selector", "#chart-calls .barlayer .trace:first-child .point path")
            if bar.size["height"] > 0]
    ActionChains(driver).move_to_element(bars[0]).click().perform()
    wait(driver, lambda d: find(d, "#calls-block").is_displayed(), "no calls block after a click on a bar")
    block = find(driver, "#calls-block")
    start, end = (dt.datetime.fromisoformat(block.get_attribute(f"data-{name}")) for name in ("from", "to"))
    assert end - start == dt.timedelta(days=1) and start.hour == 0
    expected = call_rows(site.records, lambda r: r["tenant_id"] == "globex" and in_window(r, start, end),
                         every_tenant=True)
    assert any(row[3] == HOSTILE_MODEL for row in expected)
    calls_settled(driver, len(expected))
    assert table(driver, "table-calls") == expected
    assert find(driver, "#calls-title-detail").text == (
        f"tenant globex · {start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} (UTC)")
    assert driver.execute_script("return window.__pwned") is None
    assert driver.execute_script("return document.images.length") == 0
    assert driver.execute_script(
        "return [...document.querySelectorAll('#table-calls *')].map(e => e.tagName)"
        ".filter(t => !['THEAD', 'TBODY', 'TR', 'TH', 'TD'].includes(t))") == []
    # A change of the view closes the block: it listed the calls of the view that was.
    choose(driver, "group-by", "operation")
    assert not find(driver, "#calls-block").is_displayed()
    assert_nothing_but_map_styles_blocked(driver)
