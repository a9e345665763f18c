"""HTTP routes, one module per group; each registers its flask-smorest Blueprint."""
from . import admin, health, ingestion, usage

BLUEPRINTS = (usage.blp, ingestion.blp, admin.blp, health.blp)
