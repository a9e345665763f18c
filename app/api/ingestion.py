"""Ingestion: POST /v1/usage/calls, batched, idempotent, all-or-nothing."""
from flask import current_app, g
from flask_smorest import abort
from marshmallow import Schema, fields, validate

from .. import ingest, metrics
from ..auth import require_scope
from ..scopes import CALLS_WRITE
from .blueprint import Blueprint
from ..records import CallRecords

blp = Blueprint("ingestion", __name__, url_prefix="/v1/usage",
                description="Recording LLM calls: batched, idempotent, all-or-nothing.")

MAX_BATCH = 1000


class CallBatchSchema(Schema):
    calls = CallRecords(
        required=True,
        validate=validate.Length(1, MAX_BATCH),
        metadata={"description": f"1 to {MAX_BATCH} call records."},
    )


class IngestResultSchema(Schema):
    received = fields.Integer(required=True, metadata={"description": "Records in the batch."})
    created = fields.Integer(required=True, metadata={"description": "Records stored now."})
    duplicates = fields.Integer(
        required=True,
        metadata={"description": "Records whose (tenant, call_id) was already stored or "
                                 "repeated in the batch; received = created + duplicates."},
    )


@blp.route("/calls", methods=["POST"])
@blp.doc(operationId="recordCalls", summary="Record a batch of LLM calls",
         description="All or nothing: one invalid record and nothing is stored (422, with "
                     "`errors.json.calls.<index>.<field>`). Idempotent on (tenant, call_id): "
                     "retrying a batch stores nothing new, even concurrently. A tenant key "
                     "writes for its own tenant (`tenant_id` optional); a superuser key for "
                     "any existing tenant (`tenant_id` required on every record).")
@require_scope(CALLS_WRITE)
@blp.arguments(CallBatchSchema)
@blp.response(201, IngestResultSchema)
@blp.errors(400, 401, 413, 415, 429, 503,
            e403="A tenant key wrote for another tenant; nothing was stored.",
            e422="Invalid records (errors.json.calls.<index>.<field>); nothing was stored.")
def record_calls(batch):
    records = batch["calls"]
    repository = current_app.extensions["usage_repository"]
    try:
        added = ingest.ingest_batch(records, g.api_key, repository)
    except ingest.CrossTenantWrite as error:
        abort(403, message=str(error))
    except ingest.BatchRejected as rejected:
        abort(422, errors={"json": {"calls": rejected.errors}})
    metrics.calls_ingested(added.by_tenant)
    return {"received": len(records), "created": added.created, "duplicates": added.duplicates}
