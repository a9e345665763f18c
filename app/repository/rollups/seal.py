"""Sealing months: a month's month cells, built from its day cells when it
has ended (app/rollups.py, "Sealed months").

usage_rollup_state.sealed_before is the first month without month cells.
Ingestion reads it in its transaction, after taking the lock that `seal`
waits for (`sealing_statements`), and writes month cells only for calls
before it; the first batch that finds a month ended since seals it
(`seal_due`, `seal`).
"""
from peewee import PostgresqlDatabase

from ... import local_days
from ...cell_builder import CellTable
from ...db import database
from ...models import UsageRollup, UsageRollupState, utcnow
from ...rollups import DAY_GRAINS, END_OF_TIME, MONTH_GRAINS
from ...rollups import floor as rollup_floor
from . import zone_days
from .cells import insert_cells, lock_cells
from .rebuild import months_of_stored_days, sealed_before, sealed_before_of_stored

# The grains ingestion writes for every call; month and tenant_month cells
# (MONTH_GRAINS) only for calls before sealed_before.
OPEN_GRAINS = DAY_GRAINS


def sealing_statements():
    """([lock statement] or [], read statement): ingestion's pipeline sends
    the first before its INSERT and the second after it; the second's rows
    go to `sealed_before_of`.

    PostgreSQL: the ROW EXCLUSIVE lock that the cells' upsert takes anyway,
    taken first, so that `seal` (SHARE ROW EXCLUSIVE) waits for every batch
    that read the old value, and every later batch reads the new one. SQLite:
    its one write lock, taken by the INSERT, does the same."""
    lock = ("LOCK TABLE usage_rollup IN ROW EXCLUSIVE MODE", [])
    return [lock] if isinstance(database.obj, PostgresqlDatabase) else [], \
        ("SELECT sealed_before, zone_cells FROM usage_rollup_state", [])


def open_grains():
    """The grains ingestion writes for every call: OPEN_GRAINS, and the day
    cells of the zones ROLLUP_ZONES names (app/local_days.py)."""
    return OPEN_GRAINS + tuple(local_days.grain_of(name) for name in local_days.named())


def sealed_before_of(rows):
    """The first month without month cells, from the rows of the last of
    `sealing_statements` (`sealed_before_of_stored`); and, in the
    transaction that reads it, the ready zones' cells that this worker does
    not keep are marked as not ready (`zone_days.unready_unnamed`)."""
    (value, zone_cells), = rows
    zone_days.unready_unnamed(zone_cells)
    return sealed_before_of_stored(UsageRollupState.sealed_before.python_value(value))


def seal_due(sealed_before, now=None):
    """Whether `seal` has work: a month ended since the last seal, or none
    was sealed yet (END_OF_TIME)."""
    return sealed_before < rollup_floor(now or utcnow(), "month") or sealed_before == END_OF_TIME


def seal(now=None):
    """Seal every month that ended: build the month and tenant_month cells of the months from
    sealed_before to the current UTC month from their day cells, and move
    sealed_before there; when no month was sealed yet (NULL), delete the
    month cells of the current month and later ones instead (ingestion kept
    them until now; their day cells hold the same calls). Returns the
    number of month cells written.

    One transaction, holding the cells' lock (`lock_cells`): batches in
    flight commit first, later ones wait and then write month cells for
    the sealed months. Reads go on. It runs once a month, after the month's
    first batch, and takes about as long as reading a month of day cells
    (about 1 s at 1M calls on PostgreSQL)."""
    target = rollup_floor(now or utcnow(), "month")
    with database.atomic():
        lock_cells()
        stored = sealed_before()
        if not seal_due(stored, target):
            return 0
        months = UsageRollup.grain.in_(MONTH_GRAINS)
        written = 0
        if stored == END_OF_TIME:
            UsageRollup.delete().where(months & (UsageRollup.cell_start >= target)).execute()
        else:
            UsageRollup.delete().where(months & (UsageRollup.cell_start >= stored)
                                       & (UsageRollup.cell_start < target)).execute()
            cells, sketches = months_of_stored_days(stored, target)
            insert_cells(CellTable.of(cells, sketches))
            written = len(cells)
        UsageRollupState.update(sealed_before=target).execute()
    return written
