"""The usage service: an application factory in the Flask-tutorial style."""
import os

from flask import Flask, current_app, send_from_directory
from flask_smorest import Api
from peewee import InterfaceError, OperationalError
from swagger_ui_bundle import swagger_ui_path

from . import api as routes
from . import cli
from .api.blueprint import json_error
from .auth import SECURITY, SECURITY_SCHEMES
from .db import database, open_database
from .jsonio import ExactJSONProvider
from .repository import PeeweeUsageRepository

SWAGGER_ASSETS_URL = "/docs/assets/"

API_DESCRIPTION = (
    "Records every LLM call a multi-tenant backend makes and answers usage statistics.\n\n"
    "Authenticate with an API key (`usk_<key_id>_<secret>`) as `Authorization: Bearer <key>` "
    "or `X-API-Key: <key>`. Tenant keys see and write their own tenant; superuser keys see "
    "every tenant and administer tenants and keys. Errors are JSON: "
    "`{code, status, message?, errors?}`. Money is a JSON number exact to 6 decimals; "
    "timestamps are RFC 3339 in UTC."
)


def create_app(config=None):
    """Build the app. Configuration comes from the environment, then `config`.

    DATABASE_URL      playhouse.db_url syntax; default: SQLite file in the instance folder.
    MAX_CONTENT_LENGTH  request body limit in bytes (default 8 MiB; more gets 413).
    """
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(
        DATABASE_URL=os.environ.get("DATABASE_URL")
        or "sqlite:///" + os.path.join(app.instance_path, "usage.db"),
        MAX_CONTENT_LENGTH=int(os.environ.get("MAX_CONTENT_LENGTH", 8 * 1024 * 1024)),
        API_TITLE="Usage service",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL=SWAGGER_ASSETS_URL,
        API_SPEC_OPTIONS={
            "info": {"description": API_DESCRIPTION},
            "security": SECURITY,
            "components": {"securitySchemes": SECURITY_SCHEMES},
        },
    )
    if config:
        app.config.update(config)
    os.makedirs(app.instance_path, exist_ok=True)

    database.initialize(open_database(app.config["DATABASE_URL"]))
    app.teardown_appcontext(_close_database)
    app.extensions["usage_repository"] = PeeweeUsageRepository()
    app.json = ExactJSONProvider(app)

    # Swagger UI's JavaScript and CSS are served from the installed
    # swagger-ui-bundle package: /docs works with no internet access.
    app.add_url_rule(SWAGGER_ASSETS_URL + "<path:filename>", "swagger_assets",
                     _swagger_asset)
    api = Api(app)
    routes.register(app, api)
    app.register_error_handler(OperationalError, _database_unavailable)
    app.register_error_handler(InterfaceError, _database_unavailable)
    cli.register(app)
    return app


def _database_unavailable(error):
    """A database that refuses connections (or stays locked) is a 503, not a 500."""
    current_app.logger.warning("database unavailable: %s", error)
    return json_error(503, "The database does not answer; retry later.")


def _close_database(exc):
    if not database.is_closed():
        database.close()


def _swagger_asset(filename):
    return send_from_directory(swagger_ui_path, filename)
