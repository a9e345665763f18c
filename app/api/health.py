"""Liveness and readiness probes; no API key needed."""
from flask_smorest import abort
from marshmallow import Schema, fields
from peewee import PeeweeException

from ..db import database
from .blueprint import Blueprint

blp = Blueprint("health", __name__, description="Liveness and readiness probes (no API key).")


class HealthSchema(Schema):
    status = fields.String(metadata={"example": "ok"})


@blp.route("/healthz")
@blp.doc(security=[], summary="Is the process up?",
         description="Answers 200 while the process serves requests; touches no database.")
@blp.response(200, HealthSchema)
def healthz():
    return {"status": "ok"}


@blp.route("/readyz")
@blp.doc(security=[], summary="Does the database answer?",
         description="Runs `SELECT 1` on the configured database: 200 if it answers, 503 if not.")
@blp.response(200, HealthSchema)
@blp.errors(503)
def readyz():
    try:
        database.execute_sql("SELECT 1").fetchone()
    except PeeweeException as error:
        abort(503, message=f"Database unavailable: {type(error).__name__}.")
    return {"status": "ready"}
