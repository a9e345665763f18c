"""Debian's Chromium, driven by Selenium through Debian's chromedriver, and
what a person does on /dashboard. Nothing downloads a browser or a driver:
both paths are given, so Selenium Manager is never asked for one.

Used by tests/test_dashboard_browser.py and docs/screenshot.py.
"""
import datetime as dt
import os
import shutil

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
MISSING = ("Debian's chromium and chromium-driver are needed (apt-get install chromium chromium-driver; "
           ".ci/run installs them)")
TIMEOUT = 30  # seconds: liveness only, on 2 busy cores
KEY_STORAGE = "usage-dashboard.api-key"

# Every page records the Content-Security-Policy violations it meets.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => window.__violations.push(
  {directive: event.violatedDirective, blocked: event.blockedURI, source: event.sourceFile}));
"""


def require_chromium(pytest):
    """Skip without Chromium, but fail in CI (CI is set), where .ci/run installs it."""
    if CHROMIUM and CHROMEDRIVER:
        return
    if os.environ.get("CI"):
        pytest.fail(f"Chromium is missing in CI: {MISSING}")
    pytest.skip(MISSING)


def chromium(width=1280, height=900, downloads=None):
    """Headless Chromium with background networking off, recording CSP violations."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-default-apps", "--disable-extensions", "--no-first-run", "--disable-quic",
                     "--lang=en-US", f"--window-size={width},{height}"):
        options.add_argument(argument)
    if downloads:
        options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                                  "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_script_timeout(TIMEOUT)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_VIOLATIONS})
    return driver


def emulate_width(driver, width, height=844):
    """A viewport of `width` × `height` CSS pixels. Not set_window_size: headless
    Chromium keeps its window at least 500 px wide, so 390 px needs emulation.
    `emulate_width(driver, None)` returns to the window's own size."""
    if width is None:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        return
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})


def wait(driver, condition, message="", timeout=TIMEOUT):
    return WebDriverWait(driver, timeout).until(lambda d: condition(d), message)


def find(driver, selector):
    return driver.find_element(By.CSS_SELECTOR, selector)


def loads(driver):
    """How many loads the page has finished (`data-loads` on <body>)."""
    return int(driver.execute_script("return document.body.dataset.loads || '0'"))


def after_load(driver, action):
    """Do `action` (which starts a load) and wait until that load has finished."""
    before = loads(driver)
    action()
    wait(driver, lambda d: loads(d) > before, "the page did not finish loading")


def open_signed_out(driver, url):
    """Open the page with no key in the tab: sessionStorage is cleared on
    another page of the origin, where no sign-in can be under way."""
    driver.get(url.split("/dashboard")[0] + "/healthz")
    driver.execute_script("sessionStorage.clear()")
    driver.get(url)
    wait(driver, lambda d: find(d, "#sign-in").is_displayed(), "no sign-in form")


def sign_in(driver, base, key, query=""):
    """Open /dashboard[query], type the key, press Enter, wait for the first load."""
    open_signed_out(driver, f"{base}/dashboard{query}")
    field = find(driver, "#api-key")
    after_load(driver, lambda: field.send_keys(key + "\n"))


def sign_in_with_script(driver, base, key, query, source):
    """sign_in, with the script `source` run on the page before any of its
    own (it stays for that page's life, not for the pages opened later)."""
    script = driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": source})
    try:
        sign_in(driver, base, key, query)
    finally:
        driver.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]})


# What a person reads on the page.

def page_window(driver):
    """[from, to) of the view, as the page asked the API (data-from, data-to)."""
    shown = find(driver, "#window-shown")
    return tuple(dt.datetime.fromisoformat(shown.get_attribute(f"data-{end}").replace("Z", "+00:00"))
                 for end in ("from", "to"))


def table(driver, table_id, part="tbody", text="textContent"):
    """The texts of the cells of a table's rows (its body, `thead` or `tfoot`);
    `text="innerText"`: as rendered, a line break between block elements."""
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(tr => [...tr.cells].map(td => td[arguments[1]]))",
        f"#{table_id} {part} tr", text)


def plotted(driver, chart):
    """The traces drawn in a chart: name, x (local bucket starts) and y."""
    return driver.execute_script(
        "return document.getElementById(arguments[0]).data.map(t => ({name: t.name, x: t.x, y: t.y}))",
        f"chart-{chart}")


def choose(driver, select_id, value):
    after_load(driver, lambda: Select(find(driver, f"#{select_id}")).select_by_value(value))


def stored_key(driver):
    """The key the tab keeps in sessionStorage, or None."""
    return driver.execute_script(f"return sessionStorage.getItem('{KEY_STORAGE}')")


def legend(driver, chart="cost"):
    """The names in a chart's legend, as shown."""
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)",
        f"#chart-{chart} .legend .legendtext")


def legend_colours(driver, chart="cost"):
    """{name: colour} of a chart's legend, as drawn (the fill of each entry's symbol)."""
    return driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll(arguments[0])].map(entry => ["
        "  entry.querySelector('.legendtext').textContent,"
        "  getComputedStyle(entry.querySelector('.legendpoints path')).fill]))",
        f"#chart-{chart} .legend .traces")


def swatch_colours(driver, table_id):
    """{name: colour} of the swatches in a table's name cells, as drawn."""
    return driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll(arguments[0])].map(td => ["
        "  td.textContent, getComputedStyle(td.querySelector('.swatch')).backgroundColor]))",
        f"#{table_id} tbody td:first-child")


def in_view(driver, selector):
    """Whether every element of `selector` is shown and wholly within the
    viewport's width and its scrolling box's visible part (not scrolled away)."""
    return driver.execute_script("""
        const elements = [...document.querySelectorAll(arguments[0])];
        return elements.length > 0 && elements.every(element => {
          const box = element.getBoundingClientRect();
          const scroller = element.closest('.scroll').getBoundingClientRect();
          return box.width > 0 && box.left >= Math.max(0, scroller.left) - 0.5
            && box.right <= Math.min(innerWidth, scroller.right) + 0.5;
        });""", selector)
