"""Regenerate docs/dashboard.png and docs/dashboard-narrow.png: `make screenshot`.

A throwaway SQLite database gets the README's tenants and the shipped sample
(examples/calls.jsonl, November 2026); gunicorn serves it on a free port;
Debian's Chromium (Selenium, Debian's chromedriver) signs in with a
read-only key for every tenant (`all:read`) and photographs the whole page at 1280 px (dashboard.png) and
at a phone's 390 px (dashboard-narrow.png), the window set to November 2026 in UTC, so the charts are the
same whatever today's date. acme, the tenant selected, has
two budgets and calls in the last hours for them to count: budgets are always their current period, so
that block shows today's periods.
Needs the test extra (`make install`) and `apt-get install chromium chromium-driver`.
"""
import datetime as dt
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import browser  # noqa: E402  (tests/browser.py)
from conftest import gunicorn  # noqa: E402
from data import UTC, record, store  # noqa: E402  (tests/data.py)

from app import accounts, create_app, ingest  # noqa: E402
from app.budgets import service as budgets  # noqa: E402
from app.db import database  # noqa: E402
from app.migrate import upgrade  # noqa: E402

VIEW = "?window=custom&from=2026-11-01T00:00&to=2026-12-01T00:00&bucket=day&tz=UTC&group_by=model&tenant=acme"
OUTPUTS = {1280: ROOT / "docs" / "dashboard.png", 390: ROOT / "docs" / "dashboard-narrow.png"}


def seeded_database(folder):
    url = f"sqlite:///{folder}/usage.db"
    app = create_app({"DATABASE_URL": url})
    with app.app_context():
        upgrade(database.obj)
        for tenant_id in ("acme", "globex", "initech"):
            accounts.create_tenant(tenant_id)
        accounts.create_tenant("ops", "Operators", allows_superusers=True)
        key = accounts.create_key("ops", "dashboard", scopes=["all:read"])[1]  # read-only, as advised
        with open(ROOT / "examples" / "calls.jsonl", encoding="utf-8") as lines:
            ingest.import_jsonl(lines, app.extensions["usage_repository"])
        budgets.create_budget("acme", "monthly cap", 1, "month", "UTC", [50, 80, 100], enforce=True)
        budgets.create_budget("acme", "gpt-4o", Decimal("0.2"), "week", "Europe/Berlin", model="gpt-4o")
    now = dt.datetime.now(UTC)
    store(app, [record("acme", now - dt.timedelta(hours=2 * n + 1), model=("gpt-4o", "gpt-4o-mini")[n % 2],
                       cost="0.045", duration=2000 + 150 * n) for n in range(8)])
    return url, key


def photograph(base, key, width, output):
    """The whole page at `width` px, signed in with `key`, as `output`."""
    driver = browser.chromium(width=max(width, 500), height=900)
    try:
        browser.emulate_width(driver, width, 900)  # a window is never narrower than 500 px
        browser.sign_in(driver, base, key, VIEW)

        def whole_page(d):
            # The whole page in one picture: a viewport as tall as the page
            # (again if the charts, resized to it, made the page taller).
            height = d.execute_script("return document.documentElement.scrollHeight")
            browser.emulate_width(d, width, height)
            time.sleep(0.5)  # plotly redraws a resized chart after a moment
            return d.execute_script("return document.documentElement.scrollHeight <= innerHeight")

        browser.wait(driver, whole_page, "the page kept growing")
        output.write_bytes(driver.get_screenshot_as_png())
    finally:
        driver.quit()
    print(f"Wrote {output.relative_to(ROOT)}")


def main():
    if not (browser.CHROMIUM and browser.CHROMEDRIVER):
        sys.exit(browser.MISSING)
    with tempfile.TemporaryDirectory() as folder:
        url, key = seeded_database(folder)
        with gunicorn(url, workers=1) as base:
            for width, output in OUTPUTS.items():
                photograph(base, key, width, output)


if __name__ == "__main__":
    main()
