"""HTTP routes, one module per group; each registers its flask-smorest Blueprint."""
from . import health, usage

BLUEPRINTS = (health.blp, usage.blp)
