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
origin's, no framing (on its 404s and 405s too). Plotly's own style rules
come from a stylesheet of this package (see static/plotly-rules.css), so
styles need no 'unsafe-inline' either.
"""
import importlib.util
from pathlib import Path

from flask import Blueprint, render_template, request, send_from_directory

blp = Blueprint("dashboard", __name__, url_prefix="/dashboard",
                template_folder="templates", static_folder="static")

POLICY_DIRECTIVES = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self'",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'none'",
    "frame-ancestors": "'none'",
}


def policy_text(directives):
    return "; ".join(f"{name} {sources}" for name, sources in directives.items())


CONTENT_SECURITY_POLICY = policy_text(POLICY_DIRECTIVES)

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


# For the whole app: a blueprint's own after_request would miss the 404s and
# 405s of /dashboard/… paths, which no route of the blueprint matched.
@blp.after_app_request
def secure(response):
    if request.path == blp.url_prefix or request.path.startswith(blp.url_prefix + "/"):
        response.headers.update(SECURITY_HEADERS)
    return response


@blp.route("")
def page():
    return render_template("dashboard.html")


@blp.route("/vendor/plotly.min.js")
def plotly_js():
    return send_from_directory(PLOTLY_FOLDER, "plotly.min.js", mimetype="text/javascript")
