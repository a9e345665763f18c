"""Schema migrations with peewee-migrate, from the top-level `migrations/` folder."""
import logging
from pathlib import Path

from peewee_migrate import Router
from peewee_migrate.models import MIGRATE_TABLE

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
UPGRADE_COMMAND = "flask --app wsgi db upgrade"


class SchemaNotCurrent(Exception):
    """Migrations are pending; `str()` tells the operator what to run."""


def _router(db):
    return Router(db, migrate_dir=str(MIGRATIONS_DIR), logger=logging.getLogger("usage.migrate"))


def upgrade(db):
    """Apply pending migrations; return their names. Safe to run repeatedly.

    Each migration runs in its own transaction (peewee-migrate), so a failed
    one leaves the schema as it was before it.
    """
    router = _router(db)
    pending = list(router.diff)
    if pending:
        router.run()
    return pending


def pending(db):
    """Names of the migrations not applied yet. Reads only: peewee-migrate's
    own `diff` would create its history table, which a probe must not do."""
    names = list(_router(db).todo)
    if not db.table_exists(MIGRATE_TABLE):
        return names
    applied = {name for (name,) in db.execute_sql(f"SELECT name FROM {MIGRATE_TABLE}")}
    return [name for name in names if name not in applied]


def require_current(db):
    """Raise SchemaNotCurrent unless every migration is applied."""
    missing = pending(db)
    if missing:
        raise SchemaNotCurrent(
            f"The database schema is not up to date ({len(missing)} migration(s) pending, "
            f"e.g. {missing[0]}): run `{UPGRADE_COMMAND}`.")
