"""/v1/webhooks: endpoints that receive events, and their deliveries (scope `admin`).

Routes call the same service layer as the CLI (`app.webhooks.endpoints`);
its exceptions become JSON errors with the statuses in `WEBHOOK_ERRORS`.
"""
from marshmallow import Schema, ValidationError, fields, validate

from .. import accounts, scopes
from ..auth import require_scope
from ..records import Text, WholeMatch
from ..webhooks import endpoints
from ..webhooks.outbox import EVENT_TYPES
from .admin import NOT_ADMIN
from .blueprint import Blueprint, json_error

blp = Blueprint("webhooks", __name__, url_prefix="/v1",
                description="Webhook endpoints and their deliveries (scope `admin`): events POSTed "
                            "to receivers, signed as Standard Webhooks.")

WEBHOOK_ERRORS = {
    endpoints.InvalidWebhook: 422,
    endpoints.UnknownWebhook: 404,
    accounts.UnknownTenant: 404,
}


@blp.errorhandler(endpoints.WebhookError)
@blp.errorhandler(accounts.UnknownTenant)
def webhook_error(error):
    return json_error(WEBHOOK_ERRORS[type(error)], str(error))


def validate_url(url):
    """The service layer's check, as a field validator (422 naming `url`)."""
    try:
        endpoints.checked_url(url)
    except endpoints.InvalidWebhook as error:
        raise ValidationError(str(error)) from None


class WebhookSchema(Schema):
    id = fields.String(dump_only=True, metadata={"example": "wh_0f1e2d3c4b5a6978"})
    url = Text(required=True, validate=validate_url, metadata={
        "description": "Where events are POSTed: an http or https URL, without credentials.",
        "format": "uri", "example": "https://alerts.example.com/usage"})
    events = fields.List(
        fields.String(validate=validate.OneOf(EVENT_TYPES)), load_default=None, allow_none=True,
        validate=validate.Length(min=1),
        metadata={"description": "Only these event types; null or left out: every type.",
                  "example": list(EVENT_TYPES)})
    tenant_id = fields.String(
        load_default=None, allow_none=True, validate=WholeMatch(accounts.TENANT_ID_PATTERN),
        metadata={"description": "Only this tenant's events; null or left out: every tenant's.",
                  "example": "acme"})
    created_at = fields.DateTime(dump_only=True, format="iso")
    disabled_at = fields.DateTime(dump_only=True, format="iso", allow_none=True, metadata={
        "description": "When the receiver answered 410 Gone: nothing is sent to it any more."})


class NewWebhookSchema(WebhookSchema):
    secret = fields.String(dump_only=True, metadata={
        "description": "The signing secret (`whsec_…`) a receiver verifies deliveries with. Shown "
                       "only in this response.",
        "example": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})


class DeliverySchema(Schema):
    event_id = fields.String(attribute="event.id", required=True, metadata={
        "description": "The event's id: the `webhook-id` header of every attempt.",
        "example": "evt_2f1c0a9d8e7b6c5d4e3f2a1b0c9d8e7f"})
    type = fields.String(attribute="event.type", required=True, metadata={"example": EVENT_TYPES[0]})
    timestamp = fields.DateTime(attribute="event.created_at", required=True, format="iso", metadata={
        "description": "When the event happened: the `timestamp` of the body."})
    status = fields.String(required=True, metadata={
        "description": "`pending` (to be sent or retried), `delivered` (a 2xx answer) or `failed` "
                       "(every retry used, 410 Gone, or the webhook deleted).",
        "enum": ["pending", "delivered", "failed"]})
    attempts = fields.Integer(required=True, metadata={"description": "Attempts started so far."})
    last_status = fields.Integer(required=True, allow_none=True, metadata={
        "description": "The receiver's HTTP status at the last attempt (null: no answer)."})
    last_error = fields.String(required=True, allow_none=True, metadata={
        "description": "Why the last attempt failed (null after a 2xx)."})
    next_attempt_at = fields.DateTime(required=True, format="iso", allow_none=True, metadata={
        "description": "When a pending delivery is tried next; null once delivered or failed."})
    delivered_at = fields.DateTime(required=True, format="iso", allow_none=True)


WEBHOOK_PATH = {"in": "path", "name": "webhook_id", "description": "The webhook's id.",
                "schema": {"type": "string", "pattern": endpoints.ENDPOINT_ID_PATTERN},
                "example": "wh_0f1e2d3c4b5a6978"}


@blp.route("/webhooks", methods=["POST"])
@blp.doc(operationId="createWebhook", summary="Create a webhook endpoint",
         description="Events (`budget.threshold_crossed`) are POSTed to `url` as JSON "
                     "`{type, timestamp, data}` with the Standard Webhooks headers `webhook-id`, "
                     "`webhook-timestamp` and `webhook-signature`. The response carries the signing "
                     "`secret`, shown this once.")
@require_scope(scopes.ADMIN)
@blp.arguments(WebhookSchema)
@blp.response(201, NewWebhookSchema)
@blp.errors(400, 401, 413, 415, 429, 503, e403=NOT_ADMIN, e404="Unknown tenant.",
            e422="A url that is not http(s), an unknown event type, or an invalid tenant_id.")
def create_webhook(webhook):
    return endpoints.create_endpoint(webhook["url"], webhook["events"], webhook["tenant_id"])


@blp.route("/webhooks", methods=["GET"])
@blp.doc(operationId="listWebhooks", summary="List webhook endpoints",
         description="Oldest first, disabled ones too. Never shows a secret.")
@require_scope(scopes.ADMIN)
@blp.response(200, WebhookSchema(many=True))
@blp.errors(401, 429, 503, e403=NOT_ADMIN)
def list_webhooks():
    return endpoints.list_endpoints()


@blp.route("/webhooks/<webhook_id>", methods=["DELETE"], parameters=[WEBHOOK_PATH])
@blp.doc(operationId="deleteWebhook", summary="Delete a webhook endpoint",
         description="Nothing more is sent to it; its pending deliveries fail.")
@require_scope(scopes.ADMIN)
@blp.response(204)
@blp.errors(401, 429, 503, e403=NOT_ADMIN, e404="Unknown webhook.")
def delete_webhook(webhook_id):
    endpoints.delete_endpoint(webhook_id)


@blp.route("/webhooks/<webhook_id>/deliveries", methods=["GET"], parameters=[WEBHOOK_PATH])
@blp.doc(operationId="listWebhookDeliveries", summary="A webhook's deliveries",
         description="One per event sent or to be sent to the endpoint, newest first, paginated "
                     "(`page`, `page_size`; totals in the `X-Pagination` header).")
@require_scope(scopes.ADMIN)
@blp.response(200, DeliverySchema(many=True))
@blp.paginate()
@blp.errors(401, 422, 429, 503, e403=NOT_ADMIN, e404="Unknown webhook.")
def list_deliveries(pagination_parameters, webhook_id):
    page, total = endpoints.deliveries(webhook_id, pagination_parameters.page,
                                       pagination_parameters.page_size)
    pagination_parameters.item_count = total
    return page
