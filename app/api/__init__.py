"""HTTP routes, one module per group; each registers its flask-smorest Blueprint."""
from . import admin, audit, budgets, calls_log, health, index, ingestion, series, usage, webhooks
from .blueprint import register_converters
from .errors import register_error_handlers

BLUEPRINTS = (usage.blp, series.blp, calls_log.blp, ingestion.blp, budgets.blp, admin.blp, audit.blp,
              webhooks.blp, health.blp, index.blp)


def register(app, api):
    register_converters(app, api)
    register_error_handlers(app)
    for blueprint in BLUEPRINTS:
        api.register_blueprint(blueprint)
