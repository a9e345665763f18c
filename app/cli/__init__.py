"""Command line: `flask --app wsgi db|tenants|keys|calls|rollups|budgets|webhooks|deploy ...`.

Every failure a user can cause or meet (an invalid argument, a database that
cannot be opened, a schema never migrated) ends the command with one line
saying what is wrong and exit status 1, never a traceback: `cli_errors` and
`needs_schema`, which every group's commands use. The groups live with their
concern: `accounts` (tenants, keys), `calls` (calls, rollups), `retention`
(`calls prune`, `tenants erase`), `deploy` (the nginx file), and the
budgets' and webhooks' own `commands` modules.

Which database: every command says, in one line on standard error before it
does anything, which database it opens (its password as `***`), e.g.

    Using database postgresql://postgres:***@127.0.0.1:5432/usage
    Using database sqlite:////srv/usage/instance/usage.db (DATABASE_URL is not set)

A terminal in which DATABASE_URL was never exported otherwise reads the
SQLite file of the instance folder without a word. The line is written only
when standard error is a terminal: output captured by scripts, cron's mail and
the one-line failures stay as they were, and standard output never carries it
(`KEY=$(flask --app wsgi keys create ... | tail -1)` still works).
"""
import functools
import os
import sys
from urllib.parse import urlsplit

import click
from flask import current_app
from flask.cli import AppGroup
from peewee import DatabaseError, InterfaceError

from ..accounts import AccountError
from ..db import database, open_database
from ..migrate import SchemaNotCurrent, require_current, upgrade


def shown_url(url):
    """`url` with its password, if any, replaced by `***`."""
    password = urlsplit(url).password
    return url.replace(f":{password}@", ":***@", 1) if password else url


def announce_database(url, stream=None):
    """Say which database the command uses, on standard error if it is a terminal."""
    stream = stream or sys.stderr
    if not stream.isatty():
        return
    default = "" if os.environ.get("DATABASE_URL") else " (DATABASE_URL is not set)"
    click.echo(f"Using database {shown_url(url)}{default}", file=stream)


def describe_database_error(error, url):
    """One line: which database (password hidden) and the driver's last word on it."""
    parts = urlsplit(url)
    url = shown_url(url)
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reason = lines[-1] if lines else type(error).__name__
    hint = ""
    if "does not exist" in reason and parts.scheme.startswith("postgres"):
        hint = f" Create it first: createdb {parts.path.lstrip('/')} (or psql -c 'CREATE DATABASE …')."
    elif "unable to open database file" in reason:
        hint = " Does its folder exist?"
    return f"Cannot open the database {url}: {reason}.{hint}"


def cli_errors(command):
    """Say which database the command uses (above), and turn account and
    database errors into a one-line failure (exit 1)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        announce_database(current_app.config["DATABASE_URL"])
        try:
            return command(*args, **kwargs)
        except (AccountError, SchemaNotCurrent) as error:
            raise click.ClickException(str(error)) from None
        except (DatabaseError, InterfaceError) as error:
            message = describe_database_error(error, current_app.config["DATABASE_URL"])
            raise click.ClickException(message) from None

    return wrapper


def needs_schema(command):
    """`cli_errors`, and first a check that every migration is applied: a
    database never migrated gets the command to run, not a missing-table error."""

    @functools.wraps(command)
    def checked(*args, **kwargs):
        require_current(database.obj)
        return command(*args, **kwargs)

    return cli_errors(checked)


db_cli = AppGroup("db", help="Database schema.")


def register(app):
    # Imported here: each group's module uses this one's error handling.
    from ..budgets.commands import budgets_cli
    from ..webhooks.commands import webhooks_cli
    from .accounts import keys_cli, tenants_cli
    from .calls import calls_cli, rollups_cli
    from .deploy import deploy_cli
    from . import retention  # noqa: F401  (adds `calls prune` and `tenants erase` to those groups)
    for group in (db_cli, tenants_cli, keys_cli, calls_cli, rollups_cli, budgets_cli, webhooks_cli, deploy_cli):
        app.cli.add_command(group)


# Building an index over a large llm_call table outlasts any request's limit.
MIGRATION_STATEMENT_TIMEOUT = 6 * 3600


@db_cli.command("upgrade")
@cli_errors
def db_upgrade():
    """Apply pending migrations (safe to run again)."""
    limits = database.obj.limits._replace(statement=MIGRATION_STATEMENT_TIMEOUT)
    db = open_database(current_app.config["DATABASE_URL"], limits)
    try:
        applied = upgrade(db)
    finally:
        db.close()
    click.echo(f"Applied {len(applied)} migration(s): {', '.join(applied)}" if applied
               else "Database is up to date.")
