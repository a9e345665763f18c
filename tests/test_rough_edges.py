"""Issue 23's rough edges at the HTTP surface: `GET /` for a browser, and
JSON answers that end with a newline."""
import json
from html.parser import HTMLParser

from app.api import index
from conftest import auth

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
LINKS = {"/dashboard", "/docs", "/openapi.json", "/healthz", "/readyz"}


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs, self.tags = [], set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "a":
            self.hrefs.append(dict(attrs)["href"])


def links_of(page):
    parser = Links()
    parser.feed(page)
    return parser


def test_a_browser_gets_a_page_of_links_and_an_api_client_json(client):
    page = client.get("/", headers={"Accept": BROWSER})
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert page.headers["Vary"] == "Accept" and page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    parsed = links_of(page.get_data(as_text=True))
    assert set(parsed.hrefs) == LINKS and len(parsed.hrefs) == len(LINKS)
    assert not parsed.tags & {"script", "style", "img", "form", "iframe"}
    for href in parsed.hrefs:
        assert client.get(href).status_code == 200, href

    for accept in (None, "*/*", "application/json", "application/json, text/html"):
        answer = client.get("/", headers={"Accept": accept} if accept else {})
        assert answer.mimetype == "application/json" and answer.headers["Vary"] == "Accept", accept
        assert set(answer.get_json()["links"].values()) == LINKS


def test_the_page_holds_nothing_from_the_request(client):
    pages = {client.get(path, headers={"Accept": "text/html", **extra}).get_data()
             for path, extra in (("/", {}), ("/?next=<script>alert(1)</script>", {}),
                                 ("/", {"X-Request-ID": "page-<b>", "Host": "evil.example"}))}
    assert pages == {index.PAGE.encode()}


def test_the_page_template_escapes_what_it_shows():
    page = index.render_page({"x": '/a"><script>alert(1)</script>'}, {"x": "<b>bold</b> & co"})
    assert "<script>" not in page and "<b>" not in page
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in page and 'href="/a&#34;&gt;&lt;script&gt;' in page


def test_the_index_documents_both_media_types_json_first(client):
    spec = json.loads(client.get("/openapi.json").get_data(as_text=True))
    assert list(spec["paths"]["/"]["get"]["responses"]["200"]["content"]) == ["application/json", "text/html"]


def ends_with_one_newline(response):
    body = response.get_data()
    return body.endswith(b"\n") and not body.endswith(b"\n\n") and json.loads(body) is not None


def test_every_json_answer_ends_with_a_newline(client, keys):
    keys.tenant("acme")
    keys.tenant("ops", allows_superusers=True)
    admin = auth(keys.key("ops", superuser=True))
    spec = client.get("/openapi.json")
    assert spec.mimetype == "application/json" and ends_with_one_newline(spec)
    window = {"from": "2026-11-01T00:00:00Z", "to": "2026-11-03T00:00:00Z"}
    # Every documented GET without a path parameter: the routes' own answers.
    paths = [path for path, item in spec.get_json()["paths"].items() if "get" in item and "{" not in path]
    assert {"/", "/v1/usage", "/v1/usage/series", "/v1/usage/all/series", "/v1/usage/calls"} <= set(paths)
    answers = {path: client.get(path, headers=admin,
                                query_string=window if path.startswith("/v1/usage") else {}) for path in paths}
    # And errors: flask-smorest's, the app's handlers', the body parser's.
    answers["401"] = client.get("/v1/usage")
    answers["404"] = client.get("/no/such/thing")
    answers["405"] = client.delete("/healthz")
    answers["422"] = client.get("/v1/usage/series", headers=admin, query_string={"bucket": "fortnight"})
    answers["400"] = client.post("/v1/usage/calls", headers={**admin, "Content-Type": "application/json"},
                                 data="{not json")
    json_answers = {name: r for name, r in answers.items() if r.mimetype == "application/json"}
    assert {"/v1/usage", "/v1/usage/series", "/v1/usage/calls", "401", "404", "405", "422", "400"} <= set(json_answers)
    assert [name for name, r in json_answers.items() if not ends_with_one_newline(r)] == []
    assert all(answers[path].status_code == 200 for path in ("/v1/usage", "/v1/usage/series", "/v1/usage/calls"))
