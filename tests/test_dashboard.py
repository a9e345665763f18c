"""GET /dashboard without a browser: the page, its files and its security headers.

What the page does in a browser is tests/test_dashboard_browser.py. Nothing
here touches the database, so it runs on SQLite only.
"""
from html.parser import HTMLParser
from pathlib import Path

import plotly.offline
import pytest

from conftest import build_app

STATIC = Path(__file__).resolve().parent.parent / "app" / "dashboard" / "static"


@pytest.fixture
def client(tmp_path):
    return build_app(f"sqlite:///{tmp_path}/usage.db", tmp_path).test_client()


class PageParts(HTMLParser):
    """The tags and attributes of a page, and the text inside each script and style."""

    def __init__(self):
        super().__init__()
        self.tags, self.inline, self._open = [], [], None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._open = tag if tag in ("script", "style") else None

    def handle_data(self, data):
        if self._open and data.strip():
            self.inline.append((self._open, data))

    def handle_endtag(self, tag):
        self._open = None


def parts(html):
    parser = PageParts()
    parser.feed(html)
    return parser


def directives(policy):
    return {d.split()[0]: d.split()[1:] for d in (part.strip() for part in policy.split(";")) if d}


def assert_secure(response):
    policy = directives(response.headers["Content-Security-Policy"])
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"] and policy["object-src"] == ["'none'"]
    assert not any("unsafe" in source or source in ("*", "data:", "blob:")
                   for sources in policy.values() for source in sources)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_the_page_is_served_with_a_strict_policy(client):
    response = client.get("/dashboard")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert_secure(response)


def test_the_page_has_no_inline_script_style_or_handler(client):
    page = parts(client.get("/dashboard").get_data(as_text=True))
    assert page.inline == []
    scripts = [attrs for tag, attrs in page.tags if tag == "script"]
    assert len(scripts) == 2 and all(attrs["src"].startswith("/dashboard/") for attrs in scripts)
    for tag, attrs in page.tags:
        assert tag != "style"
        assert "style" not in attrs and not any(name.startswith("on") for name in attrs), (tag, attrs)


def test_every_file_the_page_loads_is_served_here_with_its_type(client):
    page = parts(client.get("/dashboard").get_data(as_text=True))
    urls = [attrs.get("src") or attrs.get("href") for tag, attrs in page.tags if tag in ("script", "link")]
    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    assert len(urls) == 5
    for url in urls:
        assert url.startswith("/dashboard/"), url  # no CDN
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.mimetype == types[Path(url).suffix], url
        assert_secure(response)


def test_the_modules_are_served_as_javascript(client):
    for module in sorted(STATIC.glob("*.js")):
        response = client.get(f"/dashboard/static/{module.name}")
        assert response.status_code == 200 and response.mimetype == "text/javascript", module.name


def test_plotly_js_is_the_one_the_plotly_package_bundles(client):
    response = client.get("/dashboard/vendor/plotly.min.js")
    assert response.status_code == 200 and response.mimetype == "text/javascript"
    assert response.get_data(as_text=True) == plotly.offline.get_plotlyjs()


def test_no_file_of_the_page_reaches_for_another_origin(client):
    for path in [*STATIC.iterdir(), STATIC.parent / "templates" / "dashboard.html"]:
        text = path.read_text(encoding="utf-8").replace("http://www.w3.org/2000/svg", "")  # a name, not a URL
        assert "http://" not in text and "https://" not in text, path
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text, path
