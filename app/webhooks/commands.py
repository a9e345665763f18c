"""`flask --app wsgi webhooks create|list|delete|deliver`."""
import functools
import logging
import signal
import threading

import click
from flask import current_app
from flask.cli import AppGroup
from peewee import DatabaseError, InterfaceError

from ..cli import needs_schema
from ..db import database
from . import delivery, endpoints
from .outbox import EVENT_TYPES

logger = logging.getLogger(__name__)
MAX_PAUSE = 30  # seconds between tries while the database fails

webhooks_cli = AppGroup("webhooks", help="Webhook endpoints, and the worker that delivers their events.")


def webhook_errors(command):
    """A WebhookError ends the command with its one-line message (exit 1)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except endpoints.WebhookError as error:
            raise click.ClickException(str(error)) from None

    return wrapper


@webhooks_cli.command("create")
@click.argument("url")
@click.option("--event", "event_types", multiple=True, type=click.Choice(EVENT_TYPES),
              help="Send only this type of event (repeat for several; default: every type).")
@click.option("--tenant", "tenant_id", help="Send only this tenant's events (default: every tenant's).")
@needs_schema
@webhook_errors
def webhooks_create(url, event_types, tenant_id):
    """Create an endpoint that receives events at URL (http or https); its
    signing secret is printed once, alone on the last line."""
    endpoint = endpoints.create_endpoint(url, event_types or None, tenant_id)
    click.echo(f"Created webhook {endpoint.id} for {_scope(endpoint)}. "
               "Store its signing secret now; it is not shown again:")
    click.echo(endpoint.secret)


def _scope(endpoint):
    events = ", ".join(endpoint.events) if endpoint.events else "every event"
    return f"{events} of {f'tenant {endpoint.tenant_id}' if endpoint.tenant_id else 'every tenant'}"


@webhooks_cli.command("list")
@needs_schema
def webhooks_list():
    """List endpoints: id, state, events, tenant, URL. Never the secret."""
    for endpoint in endpoints.list_endpoints():
        state = f"disabled {endpoint.disabled_at.isoformat()}" if endpoint.disabled_at else "active"
        click.echo(f"{endpoint.id}\t{state}\t{','.join(endpoint.events or ['*'])}\t"
                   f"{endpoint.tenant_id or '*'}\t{endpoint.url}")


@webhooks_cli.command("delete")
@click.argument("webhook_id")
@needs_schema
@webhook_errors
def webhooks_delete(webhook_id):
    """Delete the endpoint WEBHOOK_ID; its pending deliveries fail."""
    endpoints.delete_endpoint(webhook_id)
    click.echo(f"Deleted webhook {webhook_id}")


@webhooks_cli.command("deliver")
@click.option("--once", is_flag=True,
              help="Deliver what is due now (retries that fall due meanwhile too), then exit.")
@click.option("--poll", default=1.0, show_default=True, type=click.FloatRange(0.01, 60),
              help="Seconds to wait before looking again when nothing is due.")
@needs_schema
def webhooks_deliver(once, poll):
    """Send due events to their endpoints until stopped (SIGTERM or Ctrl-C
    let the attempt in flight finish). Several workers may run at once."""
    stop = threading.Event()
    previous = {number: signal.signal(number, lambda *_: stop.set())
                for number in (signal.SIGTERM, signal.SIGINT)}
    pause = poll
    try:
        while not stop.is_set():
            try:
                if delivery.deliver_next(current_app.config):
                    pause = poll
                    continue
            except (DatabaseError, InterfaceError) as error:
                if once:
                    raise
                # A worker outlives a database outage: what it had claimed is claimed again later.
                pause = min(2 * pause, MAX_PAUSE)
                logger.warning("webhooks: the database failed (%s); trying again in %g s", error, pause)
                _reconnect()
            if once:
                break
            stop.wait(pause)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _reconnect():
    """Return the connection, which may be broken, so that the next query opens another."""
    try:
        database.close()
    except (DatabaseError, InterfaceError):
        pass
