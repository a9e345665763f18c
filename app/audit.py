"""The audit log: who administered what, and when.

Every administrative action that succeeds (a tenant created; a key created,
revoked or rotated; a webhook created or deleted) writes one `audit_event`
row in the same transaction as the action itself, so there is never an
action without its event nor an event without its action. An event holds
the time, the actor (the id of the key that made the request, or `cli` for
the command line), the request id, the action, its target (`tenant:<id>`,
`key:<id>`, `webhook:<id>`) and details of what was set — never a secret:
key strings, their digests and webhook secrets are not details.
Refused attempts (a 403, a 409, a 422) change nothing and are not events.
"""
import datetime as dt
import json

from flask import g, has_request_context

# models before request_context: that one may only load once app.db has (see its imports).
from .models import AuditEvent, page_of, utcnow
from . import request_context  # noqa: E402  isort: skip

CLI = "cli"


def current_actor():
    """The key id of the request being served, else `cli` (a command, or the
    service layer called from a script)."""
    api_key = g.get("api_key") if has_request_context() else None
    return api_key.key_id if api_key is not None else CLI


def record(action, target, **details):
    """Write the event of `action` on `target`; call it inside the action's transaction."""
    return AuditEvent.create(
        at=utcnow(),
        actor=current_actor(),
        request_id=request_context.current_id(),
        action=action,
        target=target,
        details=json.dumps(details, sort_keys=True, default=_rfc3339),
    )


def _rfc3339(value):
    """Timestamps in details as everywhere else in the API."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a detail the audit log keeps")


def page(page_number, page_size):
    """(the events of that 1-based page, newest first; the total count)."""
    return page_of(AuditEvent.select().order_by(AuditEvent.id.desc()), page_number, page_size)
