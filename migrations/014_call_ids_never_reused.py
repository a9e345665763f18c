"""llm_call.id never reused on SQLite: AUTOINCREMENT.

The call log's pages and exports read only calls with an id at most the
largest stored when they began (app/repository/calls_log.py), which holds
only if no call stored later gets an id at or below it. A PostgreSQL
sequence never goes back: nothing to do there. SQLite gives a new row of an
INTEGER PRIMARY KEY table the largest id stored plus one, so after an
erasure or a prune deleted the newest ids a call recorded later took one of
them, and appeared in a listing begun before it. With AUTOINCREMENT SQLite
keeps the largest id ever given (table sqlite_sequence) and never goes
below it: one more row read and written per insert statement, not per row.

SQLite cannot change a column in place, so the table is rebuilt as its
documentation says (https://www.sqlite.org/lang_altertable.html#otheralter):
a new table of the same definition but for AUTOINCREMENT, every row copied
with its id, the old table dropped, the new one renamed, and the old
table's indexes created again from their stored SQL. All in the migration's
one transaction; it holds the write lock while it copies (about a second
per 300,000 calls), so run it, like every migration, before the workers.
Ids deleted before it from the top of the table may still be given once,
since no sequence remembered them: from it on, never.

The rollback rebuilds the table without AUTOINCREMENT, the same way.
"""
import peewee as pw

ID = '"id" INTEGER NOT NULL PRIMARY KEY'


def migrate(migrator, database, fake=False, **kwargs):
    if isinstance(database, pw.SqliteDatabase):
        migrator.run(_rebuild, database, ID, ID + " AUTOINCREMENT")


def rollback(migrator, database, fake=False, **kwargs):
    if isinstance(database, pw.SqliteDatabase):
        migrator.run(_rebuild, database, ID + " AUTOINCREMENT", ID)


def _rebuild(database, old, new):
    (table,) = database.execute_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'llm_call'").fetchone()
    if old not in table or table.count(ID) != 1:
        raise RuntimeError(f"llm_call's id is not {old!r}: {table}")
    indexes = [sql for (sql,) in database.execute_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'llm_call' AND sql IS NOT NULL"
        " ORDER BY name")]
    database.execute_sql(table.replace('CREATE TABLE "llm_call"', 'CREATE TABLE "llm_call_rebuilt"', 1)
                         .replace(old, new, 1))
    database.execute_sql('INSERT INTO "llm_call_rebuilt" SELECT * FROM "llm_call"')
    database.execute_sql('DROP TABLE "llm_call"')
    database.execute_sql('ALTER TABLE "llm_call_rebuilt" RENAME TO "llm_call"')
    for sql in indexes:
        database.execute_sql(sql)
    if new == ID:  # no longer AUTOINCREMENT: its sequence goes too
        database.execute_sql("DELETE FROM sqlite_sequence WHERE name = 'llm_call'")
