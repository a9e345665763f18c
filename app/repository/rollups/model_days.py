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
from ...db import database
from ...models import UsageRollup
from ...rollups import MODEL_DAY, CellBuilder, following
from ..retention import held_horizon
from .cells import insert_cells, lock_cells
from .rebuild import calls_between


def rebuild_model_days(days):
    """Replace the model_day cells of each of `days` (UTC day starts) by
    cells recomputed from llm_call, a day per transaction holding the cells'
    lock (ingestion's writes wait; about a day's calls read: 0.1 s at 1M
    calls over 90 days). Days before the retention horizon have none."""
    for day in days:
        with database.atomic():
            lock_cells()
            horizon = held_horizon()
            if horizon is not None and day < horizon:
                continue
            (UsageRollup.delete()
             .where((UsageRollup.grain == MODEL_DAY) & (UsageRollup.cell_start == day))
             .execute())
            builder = CellBuilder((MODEL_DAY,))
            for row in calls_between(day, following(day, "day")):
                builder.add(row)
            insert_cells(builder.table())


def delete_model_days_before(horizon):
    """Delete the model_day cells of the days before `horizon` (a UTC
    midnight): a few per day, one statement."""
    return (UsageRollup.delete()
            .where((UsageRollup.grain == MODEL_DAY) & (UsageRollup.cell_start < horizon))
            .execute())
