"""HTTP routes, one module per group; each registers its flask-smorest Blueprint."""
from . import health, ingestion, usage

BLUEPRINTS = (usage.blp, ingestion.blp, health.blp)
