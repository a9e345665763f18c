"""SQL of the day cells of named zones (app/local_days.py): which zones are
ready, and rebuilding and verifying their cells.

A UTC month's rebuild recomputes the zone cells starting from the local
midnight at or before its first instant to the one at or before its end,
both included (`owned`): every call of the month is in one of them, and
the cell both neighbouring months own is recomputed by each, the same way.
Before the retention horizon the calls were pruned: no cell starting there
is recomputed, replaced or compared.
"""
import datetime as dt

from ... import local_days
from ...buckets import unit_containing, zone
from ...db import database
from ...models import UsageRollup, UsageRollupState
from ...rollups import CellBuilder, following
from .sources import calls_between, stored_cells


def ready():
    """{zone: whole from} of the zones whose cells are ready (usage_rollup_state.zone_cells)."""
    return local_days.ready_of(UsageRollupState.select(UsageRollupState.zone_cells).scalar())


def unready_unnamed(stored):
    """Take out of the ready zones those ROLLUP_ZONES does not name, in the
    caller's transaction: it stores calls without their cells. `stored` is
    usage_rollup_state.zone_cells as read; no statement when nothing changes."""
    ready_zones = local_days.ready_of(stored)
    named = {name: start for name, start in ready_zones.items() if name in local_days.named()}
    if len(named) < len(ready_zones):
        UsageRollupState.update(zone_cells=local_days.text_of(named)).execute()


def forget_unnamed():
    """Before a rebuild: delete the cells of zones ROLLUP_ZONES no longer
    names, and take them out of the ready ones. Returns the cells deleted."""
    with database.atomic():
        unready_unnamed(UsageRollupState.select(UsageRollupState.zone_cells).scalar())
        grains = [local_days.grain_of(name) for name in local_days.named()]
        return (UsageRollup.delete()
                .where(UsageRollup.grain.startswith(local_days.PREFIX) & UsageRollup.grain.not_in(grains))
                .execute())


def mark_ready(horizon):
    """After a rebuild: every zone ROLLUP_ZONES names is ready, whole from
    where it was if it was ready already, else from `horizon` (the retention
    horizon, None if nothing was pruned): no rebuild recomputes a cell
    before it."""
    stored = ready()
    UsageRollupState.update(zone_cells=local_days.text_of(
        {name: stored[name] if name in stored else horizon for name in local_days.named()})).execute()


def owned(month, horizon):
    """[(zone name, [(start, end)] of its local days)] that the rebuild of `month` recomputes."""
    found = []
    for name in local_days.named():
        tz = zone(name)
        lo = unit_containing(month, "day", tz)[0]
        if horizon is not None:
            lo = max(lo, local_days.midnight_at_or_after(horizon, tz))
        last = unit_containing(following(month, "month"), "day", tz)[0]
        starts = local_days.day_starts(lo, last, tz) + ([last] if last >= lo else [])
        found.append((name, [(start, unit_containing(start, "day", tz)[1]) for start in starts]))
    return found


def recomputed(month, horizon):
    """Yields (grain, start, {key: (CellNumbers, sketches)}): each owned local day's cells from llm_call."""
    for name, days in owned(month, horizon):
        grain = local_days.grain_of(name)
        for start, end in days:
            builder = CellBuilder((grain,))
            for row in calls_between(start, end):
                builder.add(row)
            sketches = builder.sketches()
            yield grain, start, {key: (cell, sketches[key]) for key, cell in builder.cells().items()}


def delete_owned(month, horizon):
    """Delete the cells `recomputed` replaces (the caller holds the cells' lock)."""
    for name, days in owned(month, horizon):
        if days:
            (UsageRollup.delete()
             .where((UsageRollup.grain == local_days.grain_of(name))
                    & UsageRollup.cell_start.in_([start for start, _ in days]))
             .execute())


def differences(month, horizon):
    """[(key, reason)] where stored zone cells of `month` differ from
    `recomputed` ones, for the ready zones from where they are whole."""
    ready_zones, found = local_days.readable(ready()), []
    for grain, start, cells in recomputed(month, horizon):
        name = local_days.zone_of(grain)
        if name not in ready_zones or (ready_zones[name] is not None and start < ready_zones[name]):
            continue
        stored = stored_cells((grain,), start, start + dt.timedelta(microseconds=1))
        for key in sorted(set(cells) | set(stored)):
            if key not in stored:
                found.append((key, "missing"))
            elif key not in cells:
                found.append((key, "has no calls"))
            elif cells[key][0].numbers() != stored[key][0]:
                found.append((key, f"numbers {stored[key][0]} != {cells[key][0].numbers()}"))
            elif list(cells[key][1]) != stored[key][1]:
                found.append((key, "sketches differ"))
    return found

