"""Keeping model_day cells right where calls go: erasure and pruning.

A model_day cell holds every tenant's calls of a day and model (with its
quarter hours, app/quarters.py), so deleting a tenant's cells leaves its
calls in these: an erasure recomputes the model_day cells of each of the
tenant's days from the calls that remain (`rebuild_model_days`). Pruning
deletes those of the pruned days (`delete_model_days_before`): their
quarters could no longer be recomputed after an erasure, and no answer
reads them (read.py takes whole pruned days from day cells, and refuses
their parts).
"""
from peewee import PostgresqlDatabase, fn

from ...cell_builder import CellBuilder
from ...db import database
from ...models import UsageRollup
from ...rollups import MODEL_DAY, following
from ..retention import held_horizon
from .cells import insert_cells, lock_cells
from .sources import calls_between


def rebuild_model_days(days):
    """Replace the model_day cells of each of `days` (UTC day starts) by
    cells recomputed from llm_call, one (day, model) per transaction: about
    a sixth of a day's calls read (0.1 s a day at 1M calls over 90 days).
    Days before the retention horizon have none.

    Ingestion is not kept waiting for long. On SQLite a transaction holds
    the one write lock for that (day, model). On PostgreSQL it locks only
    the cells it replaces (FOR UPDATE, in the key order ingestion's upsert
    locks them in), and first: a batch that wrote one of them has committed
    by then, so its calls are read; a batch that writes one later waits,
    then adds its calls, which were not read, to the cell recomputed.
    Batches of other days and models never wait."""
    for day in days:
        for model in _models_of(day):
            with database.atomic():
                if not _lock_model_day(day, model):
                    break  # the day was pruned meanwhile: its model_day cells are gone
                (UsageRollup.delete()
                 .where((UsageRollup.grain == MODEL_DAY) & (UsageRollup.cell_start == day)
                        & (UsageRollup.model == model))
                 .execute())
                builder = CellBuilder((MODEL_DAY,))
                for row in calls_between(day, following(day, "day"), model):
                    builder.add(row)
                insert_cells(builder.table())


def _models_of(day):
    """The models of the day's model_day cells."""
    return [model for (model,) in (UsageRollup
                                   .select(UsageRollup.model)
                                   .where((UsageRollup.grain == MODEL_DAY) & (UsageRollup.cell_start == day))
                                   .distinct()
                                   .order_by(UsageRollup.model)
                                   .tuples())]


def _lock_model_day(day, model):
    """Lock the model_day cells of (day, model) until the transaction ends,
    and keep prunes from recording a later horizon; False if `day` lies
    before the horizon (its cells went with its calls)."""
    if not isinstance(database.obj, PostgresqlDatabase):
        lock_cells()  # SQLite's write lock, which held_horizon relies on
    horizon = held_horizon()
    if horizon is not None and day < horizon:
        return False
    if isinstance(database.obj, PostgresqlDatabase):
        (UsageRollup
         .select(UsageRollup.id)
         .where((UsageRollup.grain == MODEL_DAY) & (UsageRollup.cell_start == day) & (UsageRollup.model == model))
         .order_by(UsageRollup.status)  # the rest of the key is '' in model_day cells
         .for_update()
         .execute())
    return True


def delete_model_days_before(horizon):
    """Delete the model_day cells of the days before `horizon` (a UTC
    midnight), a day per transaction: with their quarter hours a day's
    cells can hold megabytes, and SQLite keeps its write lock for no more
    than a day's. Returns how many were deleted."""
    deleted = 0
    while True:
        with database.atomic():
            first = (UsageRollup
                     .select(fn.MIN(UsageRollup.cell_start))
                     .where((UsageRollup.grain == MODEL_DAY) & (UsageRollup.cell_start < horizon))
                     .scalar())
            if first is None:
                return deleted
            first = UsageRollup.cell_start.python_value(first)
            deleted += (UsageRollup.delete()
                        .where((UsageRollup.grain == MODEL_DAY) & (UsageRollup.cell_start == first))
                        .execute())
