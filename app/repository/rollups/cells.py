"""The usage_rollup table: its columns, and writing rows of cells in bulk."""
from peewee import PostgresqlDatabase

from ...db import database, execute_many
from ...models import UsageRollup
from ...rollups import KEY, METRICS


NUMBERS = ["calls", "cost_micro_usd"] + [f"{m}_{s}" for m in METRICS for s in ("sum", "min", "max")]
SKETCHES = [f"{m}_sketch" for m in METRICS]
KEY_COLUMNS = ["grain", "cell_start", *KEY]


# Column types, for PostgreSQL's unnest of one array per column.
TYPES = {"grain": "text", "cell_start": "timestamp", "id": "bigint",
         **{name: "text" for name in KEY}, **{name: "bigint" for name in NUMBERS},
         **{name: "bytea" for name in SKETCHES}}
COLUMNS = KEY_COLUMNS + NUMBERS + SKETCHES


def unnest(names, rows):
    """PostgreSQL: (`unnest(...)` of one binary array per column of `names`,
    its parameters: the columns of `rows`). unnest yields the rows in order."""
    arrays = ", ".join(f"%b::{TYPES[name]}[]" for name in names)
    return f"unnest({arrays})", [list(column) for column in zip(*rows)]


def insert_rows(rows, suffix=""):
    """INSERT rows (values of COLUMNS) + `suffix`, in the order given.

    PostgreSQL: one statement reading one array per column (unnest), which
    keeps the rows' order; thousands of single-row statements, even
    pipelined, took 4 times as long. SQLite, in-process: one short statement per row."""
    if not rows:
        return
    if isinstance(database.obj, PostgresqlDatabase):
        source, params = unnest(COLUMNS, rows)
        database.execute_sql(f"INSERT INTO usage_rollup ({', '.join(COLUMNS)}) SELECT * FROM {source}{suffix}",
                             params)
        return
    sql = f"INSERT INTO usage_rollup ({', '.join(COLUMNS)}) VALUES ({', '.join([database.param] * len(COLUMNS))}){suffix}"
    execute_many(sql, rows)


def update_rows(rows):
    """Write (numbers..., sketches..., id) rows over the cells they name."""
    if not rows:
        return
    columns = NUMBERS + SKETCHES
    if isinstance(database.obj, PostgresqlDatabase):
        source, params = unnest(columns + ["id"], rows)
        assignments = ", ".join(f"{name} = v.{name}" for name in columns)
        database.execute_sql(f"UPDATE usage_rollup AS r SET {assignments} FROM {source}"
                             f" AS v({', '.join(columns + ['id'])}) WHERE r.id = v.id", params)
    else:
        assignments = ", ".join(f"{name} = ?" for name in columns)
        execute_many(f"UPDATE usage_rollup SET {assignments} WHERE id = ?", rows)


def numbers_of(cell):
    """The values of a CellNumbers for the NUMBERS columns, in order."""
    numbers = [cell.calls, cell.cost]
    for i in range(len(METRICS)):
        numbers += [cell.sums[i], cell.mins[i], cell.maxs[i]]
    return numbers


def key_params(key):
    grain, start, *rest = key
    return [grain, UsageRollup.cell_start.db_value(start), *rest]


def insert_cells(keys, cells, sketches):
    """Insert cells (`rebuild_month` deleted the month's first)."""
    insert_rows([key_params(key) + numbers_of(cells[key]) + sketches[key] for key in keys])


def key_of(row):
    grain, start, *rest = row
    return (grain, UsageRollup.cell_start.python_value(start), *rest)
