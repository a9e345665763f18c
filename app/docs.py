"""Swagger UI at /docs: its files, and the security headers of everything under /docs.

Swagger UI's JavaScript and CSS are served from the installed
swagger-ui-bundle package (/docs/assets/), so /docs works with no internet
access.

/docs gets the dashboard's headers (no sniffing, no referrer, no framing)
with a policy of its own. flask-smorest writes the page with one inline
script, Swagger UI's configuration; the policy allows exactly that script,
by the SHA-256 of its text in the page as served (the page holds nothing
from the request: its title, OpenAPI address and configuration are the
app's). 'unsafe-inline' would also let any injected script or `onerror=`
handler run; a hash does not. Swagger UI's stylesheet draws its icons as
`data:` images, hence `img-src 'self' data:`.
"""
import base64
import hashlib
import re

from flask import request, send_from_directory
from swagger_ui_bundle import swagger_ui_path

from .dashboard import POLICY_DIRECTIVES, SECURITY_HEADERS, policy_text

ASSETS_URL = "/docs/assets/"
DOCS_PATH = "/docs"
# An inline <script> (no src attribute) and its text.
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE)


def init_app(app):
    app.add_url_rule(ASSETS_URL + "<path:filename>", "swagger_assets", _swagger_asset)
    app.after_request(_secure)


def content_security_policy(page):
    """The policy of `page` (HTML text): its own inline scripts, nothing else inline."""
    hashes = [f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
              for script in INLINE_SCRIPT.findall(page)]
    return policy_text({**POLICY_DIRECTIVES, "script-src": " ".join(["'self'", *hashes]),
                        "img-src": "'self' data:"})


def _secure(response):
    if request.path == DOCS_PATH or request.path.startswith(DOCS_PATH + "/"):
        page = response.get_data(as_text=True) if response.mimetype == "text/html" else ""
        response.headers.update({**SECURITY_HEADERS, "Content-Security-Policy": content_security_policy(page)})
    return response


def _swagger_asset(filename):
    return send_from_directory(swagger_ui_path, filename)
