"""SQL of retention: the pruned range (retention_state), and pruning llm_call.

What the numbers mean and which answers they refuse: app/retention.py;
the order of a prune's steps: app/pruning.py.
"""
from peewee import PostgresqlDatabase, fn

from .. import retention
from ..db import database
from ..models import LlmCall, RetentionState, UsageRollupState
from .deletes import KeysetDelete


def pruned():
    """The recorded retention.Pruned: one statement."""
    horizon, pruned_from = RetentionState.select(RetentionState.horizon, RetentionState.pruned_from).tuples().get()
    return pruned_of(horizon, pruned_from)


def pruned_columns():
    """The two columns of `pruned()` as scalar subqueries, for a statement
    that reads them along with its own (app/repository/rollups/read.py);
    `pruned_of` their values."""
    return [RetentionState.select(RetentionState.horizon), RetentionState.select(RetentionState.pruned_from)]


def pruned_of(horizon, pruned_from):
    """The retention.Pruned of the columns' values as the driver returns them."""
    column = RetentionState.horizon
    return retention.Pruned(column.python_value(horizon), column.python_value(pruned_from))


def held_horizon():
    """The recorded horizon (None if none), read so that no prune records a
    later one before the caller's transaction ends: PostgreSQL FOR SHARE,
    which `record_horizon`'s FOR UPDATE waits for; on SQLite the caller
    holds the write lock, which any prune's write waits for."""
    query = RetentionState.select(RetentionState.horizon)
    if isinstance(database.obj, PostgresqlDatabase):
        query = query.for_update("FOR SHARE")
    return RetentionState.horizon.python_value(query.scalar())


def record_horizon(horizon):
    """Record that calls before `horizon` are being pruned: in one
    transaction, the horizon becomes the later of `horizon` and the one
    recorded, and `pruned_from` the earlier of the recorded one and the
    first call before the new horizon. Return the new retention.Pruned.

    The row is locked first (PostgreSQL FOR UPDATE; SQLite's write lock, by
    an empty write), so that two prunes at once record one after the other."""
    with database.atomic():
        if isinstance(database.obj, PostgresqlDatabase):
            RetentionState.select().for_update().execute()
        else:
            database.execute_sql("DELETE FROM retention_state WHERE 0 = 1")
        recorded = pruned()
        if recorded.horizon is not None and recorded.horizon > horizon:
            horizon = recorded.horizon
        first = (LlmCall.select(LlmCall.timestamp).where(LlmCall.timestamp < horizon)
                 .order_by(LlmCall.timestamp).limit(1).scalar())
        first = None if first is None else LlmCall.timestamp.python_value(first)
        pruned_from = min(filter(None, (first, recorded.pruned_from)), default=None)
        RetentionState.update(horizon=horizon, pruned_from=pruned_from).execute()
    return retention.Pruned(horizon, pruned_from)


def cells_missing():
    """Whether calls are stored that no rollup cell holds yet (a rebuild is due):
    pruning them would lose them for good."""
    return bool(UsageRollupState.select(UsageRollupState.needs_rebuild).scalar())


def calls_before(horizon):
    """How many calls lie before `horizon` (one count on the timestamp index)."""
    return LlmCall.select(fn.COUNT(LlmCall.id)).where(LlmCall.timestamp < horizon).scalar()


def calls_before_deleter(horizon):
    """A KeysetDelete of the calls before `horizon`, oldest first."""
    return KeysetDelete(LlmCall, LlmCall.timestamp < horizon, LlmCall.timestamp)
