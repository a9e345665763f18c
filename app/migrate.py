"""Schema migrations with peewee-migrate, from the top-level `migrations/` folder."""
import logging
from pathlib import Path

from peewee_migrate import Router

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def upgrade(db):
    """Apply pending migrations; return their names. Safe to run repeatedly.

    Each migration runs in its own transaction (peewee-migrate), so a failed
    one leaves the schema as it was before it.
    """
    logger = logging.getLogger("usage.migrate")
    router = Router(db, migrate_dir=str(MIGRATIONS_DIR), logger=logger)
    pending = list(router.diff)
    if pending:
        router.run()
    return pending
