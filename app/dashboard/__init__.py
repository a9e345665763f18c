"""`GET /dashboard`: the usage page, and the security headers of everything under it.

The page is a Jinja template and static files of this package; its charts
are drawn by plotly.js, served from the installed `plotly` Python package
(`/dashboard/vendor/plotly.min.js`), so it needs no CDN, no build step and
no internet. Everything it shows comes from the public API (`/v1/me`, the
statistics and series routes, their CSV), called by the browser with the
key the user pasted.

A superuser's browser renders names that tenants wrote (models, error
classes) while it holds a superuser key: the page writes every value as text
(never as HTML), and these headers keep a value that slipped through from
running anything: no inline script, no script or connection but this
origin's, no framing. Plotly's own style rules come from a stylesheet of
this package (see static/plotly-rules.css), so styles need no
'unsafe-inline' either.
"""
import importlib.util
from pathlib import Path

from flask import Blueprint, render_template, send_from_directory

blp = Blueprint("dashboard", __name__, url_prefix="/dashboard",
                template_folder="templates", static_folder="static")

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
))

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
}


def _plotly_folder():
    """The installed plotly package's bundled JavaScript (found without importing plotly)."""
    spec = importlib.util.find_spec("plotly")
    return Path(next(iter(spec.submodule_search_locations))) / "package_data"


PLOTLY_FOLDER = _plotly_folder()


@blp.after_request
def secure(response):
    response.headers.update(SECURITY_HEADERS)
    return response


@blp.route("")
def page():
    return render_template("dashboard.html")


@blp.route("/vendor/plotly.min.js")
def plotly_js():
    return send_from_directory(PLOTLY_FOLDER, "plotly.min.js", mimetype="text/javascript")
