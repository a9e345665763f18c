"""Liveness and readiness probes; no API key needed."""
import threading

from flask import current_app
from flask_smorest import abort
from marshmallow import Schema, fields

from ..db import database
from ..migrate import SchemaNotCurrent, require_current
from .blueprint import Blueprint

blp = Blueprint("health", __name__, description="Liveness and readiness probes (no API key).")


class HealthSchema(Schema):
    status = fields.String(metadata={"example": "ok"})


@blp.route("/healthz")
@blp.doc(operationId="checkLiveness", security=[], summary="Is the process up?",
         description="Answers 200 while the process serves requests; touches no database.")
@blp.response(200, HealthSchema)
def healthz():
    return {"status": "ok"}


@blp.route("/readyz")
@blp.doc(operationId="checkReadiness", security=[], summary="Does the database answer, with the current schema?",
         description="Runs `SELECT 1` on the configured database and checks that every "
                     "migration is applied: 200 if so; 503 if it does not answer (within "
                     "READYZ_TIMEOUT, 2 s) or migrations are pending (the message says to run "
                     "`flask --app wsgi db upgrade`).")
@blp.response(200, HealthSchema)
@blp.errors(503)
def readyz():
    timeout = current_app.config["READYZ_TIMEOUT"]
    probe = _Probe.current()
    if not probe.done.wait(timeout):
        abort(503, message=f"Database unavailable: no answer within {timeout:g} s.")
    if probe.error is not None:
        abort(503, message=probe.error)
    return {"status": "ready"}


class _Probe(threading.Thread):
    """`SELECT 1` in a thread of its own, so that /readyz answers in READYZ_TIMEOUT.

    The database calls' own limits (connect, pool check, statement) add up to
    more than a probe should wait, so the request only waits for the probe's
    result, up to READYZ_TIMEOUT; a probe still running ends on those limits.
    While one runs, later requests wait for it rather than start another: at
    most one probe per process, however often an orchestrator asks.
    """

    _lock = threading.Lock()
    _latest = None

    def __init__(self):
        super().__init__(name="readyz-probe", daemon=True)
        self.target = database.obj
        self.done = threading.Event()
        self.error = None  # why the service is not ready, if it is not

    @classmethod
    def current(cls):
        """The probe still running for this database, else a new one."""
        with cls._lock:
            latest = cls._latest
            if latest is None or latest.done.is_set() or latest.target is not database.obj:
                latest = cls._latest = cls()
                latest.start()
            return latest

    def run(self):
        try:
            with database.connection_context():
                database.execute_sql("SELECT 1").fetchone()
                require_current(database.obj)
        except SchemaNotCurrent as error:
            self.error = f"Not ready: {error}"
        except Exception as error:  # any failure means not ready; the thread must not die silently
            self.error = f"Database unavailable: {type(error).__name__}."
        finally:
            self.done.set()
