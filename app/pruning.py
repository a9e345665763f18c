"""`calls prune`: deleting the raw calls before the retention horizon.

The rule and what answers then refuse: app/retention.py. A prune

1. refuses while calls are stored that no rollup cell holds (migration 004
   on an old database, a restore of llm_call alone): the cells are all that
   remains of pruned calls, so `rollups rebuild` must run first;
2. records the new horizon (app/repository/retention.py `record_horizon`)
   in its own transaction, *before* deleting anything. So from the moment
   the first call goes, every worker refuses (409) the answers that need
   calls of the pruned range; recorded after, a request in between would
   read a half-pruned day and answer wrong totals without a word. (A
   statistics request that began earlier reads its snapshot, where every
   call is still there, and answers right.) The cost: while the prune runs,
   answers refused are ones that could still have been given;
3. deletes the calls before the horizon, oldest first, in chunks
   (app/chunks.py), each its own short transaction: ingestion waits at most
   a chunk on SQLite, and never on PostgreSQL. Cells are kept, but the
   model_day cells of the pruned days (a day per transaction): they
   hold every tenant's calls, and an erasure could no longer recompute them
   (app/repository/rollups/model_days.py).

Interrupted, it leaves the horizon recorded and the calls before it
partly deleted: answers over that range are refused either way, and the
next prune (any later horizon included) deletes the rest.
"""
from dataclasses import dataclass

from . import chunks
from .models import utcnow
from .repository import retention as stored
from .repository import rollups
from .retention import Pruned, horizon_for


class CellsMissing(Exception):
    """Calls are stored that no rollup cell holds: prune would lose them."""

    def __str__(self):
        return ("Calls are stored that no rollup cell holds yet (see migration 004): pruning would lose "
                "them for good. Run `flask --app wsgi rollups rebuild` first.")


@dataclass(frozen=True)
class Plan:
    """What a prune will do: delete `calls` calls before `pruned.horizon`."""

    pruned: Pruned
    calls: int


def plan(days, now=None):
    """Record the horizon of RETENTION_DAYS `days` at `now` (default: the
    clock) and count the calls to delete: steps 1 and 2 above."""
    if stored.cells_missing():
        raise CellsMissing()
    pruned = stored.record_horizon(horizon_for(now or utcnow(), days))
    return Plan(pruned, stored.calls_before(pruned.horizon))


def prune(plan, size=None, progress=None):
    """Delete the calls before the planned horizon (step 3); return how many.
    `size` and `progress` as for chunks.delete_all."""
    deleter = stored.calls_before_deleter(plan.pruned.horizon)
    deleted = chunks.delete_all(deleter.chunk, size, progress)
    rollups.delete_model_days_before(plan.pruned.horizon)
    return deleted
