"""HTTP routes, one module per group; each registers its flask-smorest Blueprint."""
from . import admin, health, ingestion, usage
from .blueprint import register_converters

BLUEPRINTS = (usage.blp, ingestion.blp, admin.blp, health.blp)


def register(app, api):
    register_converters(app, api)
    for blueprint in BLUEPRINTS:
        api.register_blueprint(blueprint)
