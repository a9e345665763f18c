"""Administration of tenants and API keys (scope `admin`), and /v1/me.

Routes call the same service layer as the CLI (`app.accounts`, and
`app.erasure` for erasing a tenant); its exceptions become JSON errors with
the statuses in `ACCOUNT_ERRORS`.
The audit log's route is in app/api/audit.py.
"""
import datetime as dt

from flask import g
from marshmallow import Schema, fields, validate

from .. import accounts, erasure, scopes
from ..auth import require_api_key, require_scope
from ..records import Text, UtcDateTime, WholeMatch
from .blueprint import Blueprint, json_error

blp = Blueprint("administration", __name__, url_prefix="/v1",
                description="Tenants and API keys (scope `admin`), and the caller's own key.")

ACCOUNT_ERRORS = {
    accounts.TenantExists: 409,
    accounts.UnknownTenant: 404,
    accounts.UnknownKey: 404,
    accounts.SuperuserNotAllowed: 422,
    accounts.InvalidTenantId: 422,
    accounts.InvalidKeySettings: 422,
    accounts.KeyNotRotatable: 409,
    erasure.OwnTenant: 409,
}


@blp.errorhandler(accounts.AccountError)
def account_error(error):
    return json_error(ACCOUNT_ERRORS[type(error)], str(error))


class TenantSchema(Schema):
    tenant_id = fields.String(
        required=True, validate=WholeMatch(accounts.TENANT_ID_PATTERN),
        metadata={"description": "Slug: 1-64 of a-z, 0-9, '_', '-', starting with a letter or digit.",
                  "example": "acme"})
    name = Text(validate=validate.Length(1, 255), load_default=None,
                         metadata={"description": "Display name; defaults to the tenant_id.",
                                   "example": "Acme Corp"})
    allows_superusers = fields.Boolean(load_default=False,
                                       metadata={"description": "May this tenant hold superuser keys?"})
    created_at = fields.DateTime(dump_only=True, format="iso")


SCOPES_DOC = "; ".join(f"`{name}`: {allows}" for name, allows in scopes.SCOPES.items())


class KeySchema(Schema):
    key_id = fields.String(dump_only=True, metadata={"description": "Public identifier of the key."})
    tenant_id = fields.String(dump_only=True)
    name = Text(required=True, validate=validate.Length(1, 255), metadata={"example": "dashboard"})
    is_superuser = fields.Boolean(
        load_default=None,
        metadata={"description": "May the key reach every tenant? Only on tenants that allow "
                                 "superusers. Default: whether `scopes` holds `all:read` or `admin`."})
    scopes = fields.List(
        fields.String(validate=validate.OneOf(scopes.SCOPES)), load_default=None,
        validate=validate.Length(min=1),
        metadata={"description": "What the key may do: " + SCOPES_DOC + ". Default: `usage:read` and "
                                 "`calls:write` for a tenant key, all four for a superuser key.",
                  "example": ["usage:read"]})
    created_at = fields.DateTime(dump_only=True, format="iso")
    expires_at = UtcDateTime(
        load_default=None, allow_none=True,
        metadata={"description": "When the key stops working (401); null: never. In the future, "
                                 "with an explicit offset.", "example": "2027-03-01T00:00:00Z"})
    revoked_at = fields.DateTime(dump_only=True, format="iso", allow_none=True)
    last_used_at = fields.DateTime(
        dump_only=True, format="iso", allow_none=True,
        metadata={"description": "Refreshed at most once a minute."})
    replaced_by = fields.String(dump_only=True, allow_none=True, metadata={
        "description": "The key id of the key a rotation replaced this one with."})


class NewKeySchema(KeySchema):
    key = fields.String(dump_only=True, metadata={
        "description": "The key itself (`usk_<key_id>_<secret>`). Shown only in this response."})

    class Meta:
        exclude = ("revoked_at", "last_used_at", "replaced_by")


class RotationSchema(Schema):
    grace_seconds = fields.Integer(
        load_default=0, strict=True,
        validate=validate.Range(0, int(accounts.MAX_ROTATION_GRACE.total_seconds())),
        metadata={"description": "How long the old key keeps working beside the new one "
                                 "(0, the default: it stops at once; at most 30 days)."})
    expires_at = UtcDateTime(
        allow_none=True,
        metadata={"description": "The new key's expiry; null: never. Default: none if the old key "
                                 "had none, else the old key's lifetime counted from now."})


class MeSchema(Schema):
    tenant_id = fields.String(required=True)
    key_id = fields.String(required=True)
    name = fields.String(required=True)
    is_superuser = fields.Boolean(required=True, metadata={"description": "May it reach every tenant?"})
    scopes = fields.List(fields.String(), required=True, metadata={"description": "What it may do."})
    expires_at = fields.DateTime(format="iso", required=True, allow_none=True)


NOT_ADMIN = "The key lacks the scope admin."
TENANT_PATH = {"in": "path", "name": "tenant_id", "description": "The tenant's slug.",
               "example": "acme"}
KEY_PATH = {"in": "path", "name": "key_id", "description": "The key's public id (16 hex digits).",
            "example": "0f1e2d3c4b5a6978"}


@blp.route("/tenants", methods=["POST"])
@blp.doc(operationId="createTenant", summary="Create a tenant",
         description="Tenants are never created implicitly (ingestion refuses unknown ones). "
                     "`allows_superusers` permits superuser keys for the tenant.")
@require_scope(scopes.ADMIN)
@blp.arguments(TenantSchema)
@blp.response(201, TenantSchema)
@blp.errors(400, 401, 413, 415, 429, 503, e403=NOT_ADMIN, e409="A tenant with this id exists.",
            e422="Invalid tenant_id, name or flag.")
def create_tenant(tenant):
    return accounts.create_tenant(tenant["tenant_id"], tenant["name"], tenant["allows_superusers"])


@blp.route("/tenants", methods=["GET"])
@blp.doc(operationId="listTenants", summary="List tenants",
         description="Sorted by tenant_id, paginated (`page`, `page_size`; totals in the "
                     "`X-Pagination` header).")
@require_scope(scopes.ADMIN)
@blp.response(200, TenantSchema(many=True))
@blp.paginate()
@blp.errors(401, 422, 429, 503, e403=NOT_ADMIN)
def list_tenants(pagination_parameters):
    page, total = accounts.list_tenants(pagination_parameters.page, pagination_parameters.page_size)
    pagination_parameters.item_count = total
    return page


@blp.route("/tenants/<tenant_id:tenant_id>", methods=["GET"], parameters=[TENANT_PATH])
@blp.doc(operationId="getTenant", summary="Get a tenant", description="One tenant by its slug.")
@require_scope(scopes.ADMIN)
@blp.response(200, TenantSchema)
@blp.errors(401, 429, 503, e403=NOT_ADMIN, e404="Unknown tenant.")
def get_tenant(tenant_id):
    return accounts.get_tenant(tenant_id)


class ErasingSchema(Schema):
    tenant_id = fields.String(required=True)
    erasing_since = fields.DateTime(format="iso", required=True,
                                    metadata={"description": "When its erasure began."})
    calls_left = fields.Integer(required=True, metadata={"description": "Calls not deleted yet."})
    message = fields.String(required=True, metadata={"description": "What finishes the erasure."})


@blp.route("/tenants/<tenant_id:tenant_id>", methods=["DELETE"], parameters=[TENANT_PATH])
@blp.doc(operationId="eraseTenant", summary="Erase a tenant and everything it holds",
         description="Deletes the tenant's calls, rollup cells, API keys, budgets (with their counters "
                     "and alerts) and webhooks (endpoints, events, deliveries); the audit log keeps the "
                     "`tenant.erase` event. At once, before anything is deleted, the tenant becomes unknown "
                     "(404 here, 422 to ingestion) and its keys answer 401. A tenant of at most "
                     f"{erasure.SYNCHRONOUS_CALLS:,} calls is erased before the answer (204); a larger one "
                     "answers 202, and `flask --app wsgi tenants erase <tenant_id>` (or the scheduled "
                     "`tenants erase --pending`) deletes the rest in chunks. Asking again continues an "
                     "erasure that was interrupted or left to the command line. A key cannot erase its own "
                     "tenant (409).")
@require_scope(scopes.ADMIN)
@blp.response(204, description="Erased: the tenant and everything it held are gone.")
@blp.alt_response(202, success=True, schema=ErasingSchema,
                  description="Too large to erase within the request: the tenant is unknown from now "
                              "on, and the command line deletes the rest.")
@blp.errors(401, 429, 503, e403=NOT_ADMIN, e404="Unknown tenant.",
            e409="The key belongs to this tenant.")
def erase_tenant(tenant_id):
    erasure.refuse_own(tenant_id, g.api_key)
    begun = erasure.begin(tenant_id)
    if begun.tally["calls"] > erasure.SYNCHRONOUS_CALLS:
        return ErasingSchema().dump({
            "tenant_id": tenant_id, "erasing_since": begun.since, "calls_left": begun.tally["calls"],
            "message": f"{begun.tally['calls']:,} calls are more than a request erases "
                       f"({erasure.SYNCHRONOUS_CALLS:,}): run `flask --app wsgi tenants erase {tenant_id}` "
                       "to delete them (or let the scheduled `tenants erase --pending` do it)."}), 202
    erasure.complete(begun)


@blp.route("/tenants/<tenant_id:tenant_id>/keys", methods=["POST"], parameters=[TENANT_PATH])
@blp.doc(operationId="createKey", summary="Create an API key for a tenant",
         description="The response carries the key itself, shown this once; only a hash is stored. "
                     "A superuser key, and the scopes `all:read` and `admin`, need a tenant with "
                     "`allows_superusers`. For a dashboard, create a read-only key: "
                     "`{\"name\": \"dashboard\", \"scopes\": [\"all:read\"]}`.")
@require_scope(scopes.ADMIN)
@blp.arguments(KeySchema)
@blp.response(201, NewKeySchema)
@blp.errors(400, 401, 413, 415, 429, 503, e403=NOT_ADMIN, e404="Unknown tenant.",
            e422="Invalid body, unknown or ill-matched scopes, an expiry in the past, or the tenant "
                 "does not allow superuser keys.")
def create_key(new_key, tenant_id):
    api_key, key_string = accounts.create_key(tenant_id, new_key["name"], new_key["is_superuser"],
                                              new_key["scopes"], new_key["expires_at"])
    api_key.key = key_string  # for this response only; never stored
    return api_key


@blp.route("/tenants/<tenant_id:tenant_id>/keys", methods=["GET"], parameters=[TENANT_PATH])
@blp.doc(operationId="listKeys", summary="List a tenant's API keys",
         description="Oldest first, with `revoked_at` and `last_used_at`. Never shows a key or "
                     "its secret.")
@require_scope(scopes.ADMIN)
@blp.response(200, KeySchema(many=True))
@blp.errors(401, 429, 503, e403=NOT_ADMIN, e404="Unknown tenant.")
def list_keys(tenant_id):
    return list(accounts.list_keys(tenant_id))


@blp.route("/keys/<key_id:key_id>", methods=["DELETE"], parameters=[KEY_PATH])
@blp.doc(operationId="revokeKey", summary="Revoke an API key",
         description="Every worker refuses the key (401) from the next request on. "
                     "Revoking a revoked key changes nothing.")
@require_scope(scopes.ADMIN)
@blp.response(204)
@blp.errors(401, 429, 503, e403=NOT_ADMIN, e404="Unknown key.")
def revoke_key(key_id):
    accounts.revoke_key(key_id)


@blp.route("/keys/<key_id:key_id>/rotate", methods=["POST"], parameters=[KEY_PATH])
@blp.doc(operationId="rotateKey", summary="Rotate an API key",
         description="Creates a new key of the same tenant, name, kind and scopes (shown this "
                     "once) and lets the old key work for `grace_seconds` more, then 401. A key "
                     "rotates once: a revoked, expired or already rotated key is a 409.")
@require_scope(scopes.ADMIN)
@blp.arguments(RotationSchema)
@blp.response(201, NewKeySchema)
@blp.errors(400, 401, 413, 415, 429, 503, e403=NOT_ADMIN, e404="Unknown key.",
            e409="The key is revoked, expired or already rotated.",
            e422="grace_seconds out of range, or an expiry in the past.")
def rotate_key(rotation, key_id):
    options = {"expires_at": rotation["expires_at"]} if "expires_at" in rotation else {}
    new_key, key_string, _ = accounts.rotate_key(
        key_id, dt.timedelta(seconds=rotation["grace_seconds"]), **options)
    new_key.key = key_string  # for this response only; never stored
    return new_key


@blp.route("/me", methods=["GET"])
@blp.doc(operationId="getMe", summary="The key making this request",
         description="Who the presented key is: its tenant, id, name, kind, scopes and expiry. "
                     "Any valid key.")
@require_api_key
@blp.response(200, MeSchema)
@blp.errors(401, 429, 503)
def me():
    return g.api_key
