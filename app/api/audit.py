"""GET /v1/audit: the audit log (app/audit.py), newest first, for `admin` keys."""
import json

from marshmallow import Schema, fields

from .. import audit, scopes
from ..auth import require_scope
from .blueprint import Blueprint

blp = Blueprint("audit", __name__, url_prefix="/v1",
                description="The audit log of administrative actions (scope `admin`).")


class AuditEventSchema(Schema):
    id = fields.Integer(required=True, metadata={"description": "Increases with every event."})
    at = fields.DateTime(format="iso", required=True)
    actor = fields.String(required=True, metadata={
        "description": "The key id that made the request, or `cli` for the command line."})
    request_id = fields.String(required=True, allow_none=True, metadata={
        "description": "The request's X-Request-ID (null for the command line)."})
    action = fields.String(required=True, metadata={
        "description": "`tenant.create`, `key.create`, `key.revoke`, `key.rotate`, `webhook.create` "
                       "or `webhook.delete`.",
        "example": "key.create"})
    target = fields.String(required=True, metadata={
        "description": "What it acted on: `tenant:<tenant_id>`, `key:<key_id>` or "
                       "`webhook:<webhook_id>`.",
        "example": "key:0f1e2d3c4b5a6978"})
    details = fields.Function(lambda event: json.loads(event.details), required=True, metadata={
        "description": "What the action set (never a secret), e.g. a new key's tenant, name, "
                       "scopes and expiry.", "type": "object"})


@blp.route("/audit", methods=["GET"])
@blp.doc(operationId="listAuditEvents", summary="The audit log",
         description="Every administrative action that succeeded, newest first, paginated "
                     "(`page`, `page_size`; totals in the `X-Pagination` header). Events are "
                     "written in the action's own transaction and never changed.")
@require_scope(scopes.ADMIN)
@blp.response(200, AuditEventSchema(many=True))
@blp.paginate()
@blp.errors(401, 422, 429, 503, e403="The key lacks the scope admin.")
def list_audit_events(pagination_parameters):
    events, total = audit.page(pagination_parameters.page, pagination_parameters.page_size)
    pagination_parameters.item_count = total
    return events
