"""SQL of the day cells of named zones (app/local_days.py): which zones are
ready, and the cells a month's rebuild recomputes.

A UTC month's rebuild recomputes the zone cells starting from the local
midnight at or before its first instant to the one at or before its end,
both included (`owned`): every call of the month is in one of them, and
the cell both neighbouring months own is recomputed by each, the same way.
Before the retention horizon the calls were pruned: no cell starting there
is recomputed, replaced or compared (`rebuild.recomputed`, `rebuild.differences`).
"""
from ... import local_days
from ...buckets import unit_containing, zone
from ...cell_builder import CellNumbers, merged
from ...db import database
from ...models import UsageRollup, UsageRollupState
from ...rollups import following


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


def owned(month, horizon, zones):
    """{grain: [(start, end)] of its local days} that the rebuild of `month`
    recomputes, per zone of `zones` ({name: whole from, or None}), from the
    retention `horizon` and its whole from on."""
    found = {}
    for name, whole_from in zones.items():
        tz = zone(name)
        lo = unit_containing(month, "day", tz)[0]
        for bound in (horizon, whole_from):
            if bound is not None:
                lo = max(lo, local_days.midnight_at_or_after(bound, tz))
        last = unit_containing(following(month, "month"), "day", tz)[0]
        starts = local_days.day_starts(lo, last, tz) + ([last] if last >= lo else [])
        if starts:
            found[local_days.grain_of(name)] = [(start, unit_containing(start, "day", tz)[1]) for start in starts]
    return found


class OwnedCells:
    """The zones' cells that a month's rebuild owns (`owned`), added up from
    the calls of its UTC days as `rebuild.recomputed` reads them (`add`), and
    of the ranges outside those days that they hold (`edges`): the calls are
    read once for every grain, not once more per zone."""

    def __init__(self, month, horizon, zones):
        self.days = owned(month, horizon, zones)
        self.grains = tuple(self.days)
        self._starts = {grain: {start for start, _ in days} for grain, days in self.days.items()}
        self._numbers, self._parts = {}, []

    def add(self, cells, sketches):
        """Add the owned zones' cells among a CellBuilder's `cells()` and `sketches()`."""
        part = {}
        for key, cell in cells.items():
            if key[1] in self._starts.get(key[0], ()):
                self._numbers.setdefault(key, CellNumbers()).add(cell.calls, cell.cost, cell.sums, cell.mins,
                                                                 cell.maxs)
                part[key] = sketches[key]
        self._parts.append(part)

    def edges(self, lo, hi):
        """The ranges outside [lo, hi), the UTC days read, that hold calls of owned cells."""
        first = min((days[0][0] for days in self.days.values()), default=lo)
        last = max((days[-1][1] for days in self.days.values()), default=hi)
        return [(a, b) for a, b in ((first, lo), (hi, last)) if a < b]

    def results(self):
        """Yields ((grain,), first start, end of the last day, {key: (CellNumbers,
        sketches)}) per zone: its owned cells are those starting in that range."""
        sketches = merged(*self._parts)
        for grain, days in self.days.items():
            yield (grain,), days[0][0], days[-1][1], {key: (cell, sketches[key]) for key, cell in self._numbers.items()
                                                      if key[0] == grain}


def delete_owned(month, horizon):
    """Delete the zones' cells the rebuild of `month` replaces (the caller holds the cells' lock)."""
    for grain, days in owned(month, horizon, {name: None for name in local_days.named()}).items():
        (UsageRollup.delete()
         .where((UsageRollup.grain == grain) & UsageRollup.cell_start.in_([start for start, _ in days]))
         .execute())
