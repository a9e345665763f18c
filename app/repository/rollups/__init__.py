"""SQL for usage_rollup, the cells `percentiles=approximate` reads.

What a cell is and how a window is covered: `app/rollups.py`.

- `cells`: the table's columns, bulk inserts and updates of cells;
- `keep`: `cells_of` calls and add them (`cell_writes`, `compacted`), run by ingestion in the transaction
  that stores the calls;
- `rebuild`: recomputing cells from llm_call (`rollups rebuild|verify`);
- `seal`: a month's month cells, built from its day cells when it has ended;
- `model_days`: model_day cells (every tenant's) kept right by erasure and pruning;
- `zone_days`: the day cells of named zones (app/local_days.py): which are ready, their rebuild;
- `sources`: calls and stored cells as rebuilds read them;
- `quarter_parts`: parts of days read from model_day cells' quarter hours;
- `window_covers`: covers past the latest call, and by the named zones' day cells;
- `read`: `approximate`, statistics of windows from cells and raw edges,
  and `reads_cells`, whether a window holds any whole cell; `read_state`: what it reads first;
  `cell_source`: the SQL of its cells.
"""
from .keep import add, cell_writes, cells_of, compacted, write_compacted
from .model_days import delete_model_days_before, rebuild_model_days
from .read import RollupsNotBuilt, approximate, reads_cells
from .rebuild import calls_past_end_of_time, differences, mark_rebuilt, months_to_rebuild, rebuild_month
from .seal import open_grains, seal, seal_due, sealed_before_of, sealing_statements

__all__ = ["RollupsNotBuilt", "add", "approximate", "calls_past_end_of_time", "cell_writes", "cells_of", "compacted",
           "delete_model_days_before", "differences", "mark_rebuilt", "months_to_rebuild", "open_grains", "reads_cells",
           "rebuild_model_days", "rebuild_month", "seal", "seal_due", "sealed_before_of", "sealing_statements",
           "write_compacted"]
