"""Administration of tenants and API keys (superuser keys), and /v1/me.

Routes call the same service layer as the CLI (`app.accounts`); its
exceptions map to HTTP statuses in `ACCOUNT_ERRORS`.
"""
from flask import g
from flask_smorest import abort
from marshmallow import Schema, fields, validate

from .. import accounts
from ..auth import require_api_key, require_superuser
from ..jsonio import Blueprint

blp = Blueprint("administration", __name__, url_prefix="/v1",
                description="Tenants and API keys (superuser keys only), and the caller's own key.")

ACCOUNT_ERRORS = {
    accounts.TenantExists: 409,
    accounts.UnknownTenant: 404,
    accounts.UnknownKey: 404,
    accounts.SuperuserNotAllowed: 422,
    accounts.InvalidTenantId: 422,
}


def _abort_for(error):
    abort(ACCOUNT_ERRORS[type(error)], message=str(error))


class TenantSchema(Schema):
    tenant_id = fields.String(
        required=True, validate=validate.Regexp(accounts.TENANT_ID_PATTERN),
        metadata={"description": "Slug: 1-64 of a-z, 0-9, '_', '-', starting with a letter or digit.",
                  "example": "acme"})
    name = fields.String(validate=validate.Length(1, 255), load_default=None,
                         metadata={"description": "Display name; defaults to the tenant_id.",
                                   "example": "Acme Corp"})
    allows_superusers = fields.Boolean(load_default=False,
                                       metadata={"description": "May this tenant hold superuser keys?"})
    created_at = fields.DateTime(dump_only=True, format="iso")


class KeySchema(Schema):
    key_id = fields.String(dump_only=True, metadata={"description": "Public identifier of the key."})
    tenant_id = fields.String(dump_only=True)
    name = fields.String(required=True, validate=validate.Length(1, 255),
                         metadata={"example": "dashboard"})
    is_superuser = fields.Boolean(load_default=False)
    created_at = fields.DateTime(dump_only=True, format="iso")
    revoked_at = fields.DateTime(dump_only=True, format="iso", allow_none=True)
    last_used_at = fields.DateTime(
        dump_only=True, format="iso", allow_none=True,
        metadata={"description": "Refreshed at most once a minute."})


class NewKeySchema(KeySchema):
    key = fields.String(dump_only=True, metadata={
        "description": "The key itself (`usk_<key_id>_<secret>`). Shown only in this response."})

    class Meta:
        exclude = ("revoked_at", "last_used_at")


class MeSchema(Schema):
    tenant_id = fields.String(required=True)
    key_id = fields.String(required=True)
    name = fields.String(required=True)
    is_superuser = fields.Boolean(required=True)


UNAUTHORIZED = {"schema": "Error", "description": "Missing, unknown or revoked API key."}
FORBIDDEN = {"schema": "Error", "description": "The key is not a superuser key."}


@blp.route("/tenants", methods=["POST"])
@blp.doc(summary="Create a tenant")
@require_superuser
@blp.arguments(TenantSchema)
@blp.response(201, TenantSchema)
@blp.alt_response(401, **UNAUTHORIZED)
@blp.alt_response(403, **FORBIDDEN)
@blp.alt_response(409, schema="Error", description="A tenant with this id exists.")
@blp.alt_response(422, schema="Error", description="Invalid tenant_id, name or flag.")
def create_tenant(tenant):
    try:
        return accounts.create_tenant(tenant["tenant_id"], tenant["name"], tenant["allows_superusers"])
    except accounts.AccountError as error:
        _abort_for(error)


@blp.route("/tenants", methods=["GET"])
@blp.doc(summary="List tenants", description="Sorted by tenant_id, paginated (`page`, `page_size`; "
                                             "totals in the `X-Pagination` header).")
@require_superuser
@blp.response(200, TenantSchema(many=True))
@blp.paginate()
@blp.alt_response(401, **UNAUTHORIZED)
@blp.alt_response(403, **FORBIDDEN)
def list_tenants(pagination_parameters):
    page, total = accounts.list_tenants(pagination_parameters.page, pagination_parameters.page_size)
    pagination_parameters.item_count = total
    return page


@blp.route("/tenants/<tenant_id>", methods=["GET"])
@blp.doc(summary="Get a tenant")
@require_superuser
@blp.response(200, TenantSchema)
@blp.alt_response(401, **UNAUTHORIZED)
@blp.alt_response(403, **FORBIDDEN)
@blp.alt_response(404, schema="Error", description="Unknown tenant.")
def get_tenant(tenant_id):
    try:
        return accounts.get_tenant(tenant_id)
    except accounts.AccountError as error:
        _abort_for(error)


@blp.route("/tenants/<tenant_id>/keys", methods=["POST"])
@blp.doc(summary="Create an API key for a tenant",
         description="The response carries the key itself, shown this once; only a hash is stored. "
                     "A superuser key needs a tenant with `allows_superusers`.")
@require_superuser
@blp.arguments(KeySchema)
@blp.response(201, NewKeySchema)
@blp.alt_response(401, **UNAUTHORIZED)
@blp.alt_response(403, **FORBIDDEN)
@blp.alt_response(404, schema="Error", description="Unknown tenant.")
@blp.alt_response(422, schema="Error", description="Invalid body, or superuser keys not allowed.")
def create_key(new_key, tenant_id):
    try:
        api_key, key_string = accounts.create_key(tenant_id, new_key["name"], new_key["is_superuser"])
    except accounts.AccountError as error:
        _abort_for(error)
    api_key.key = key_string  # for this response only; never stored
    return api_key


@blp.route("/tenants/<tenant_id>/keys", methods=["GET"])
@blp.doc(summary="List a tenant's API keys", description="Never shows a key or its secret.")
@require_superuser
@blp.response(200, KeySchema(many=True))
@blp.alt_response(401, **UNAUTHORIZED)
@blp.alt_response(403, **FORBIDDEN)
@blp.alt_response(404, schema="Error", description="Unknown tenant.")
def list_keys(tenant_id):
    try:
        return list(accounts.list_keys(tenant_id))
    except accounts.AccountError as error:
        _abort_for(error)


@blp.route("/keys/<key_id>", methods=["DELETE"])
@blp.doc(summary="Revoke an API key",
         description="Every worker refuses the key (401) from the next request on. "
                     "Revoking a revoked key changes nothing.")
@require_superuser
@blp.response(204)
@blp.alt_response(401, **UNAUTHORIZED)
@blp.alt_response(403, **FORBIDDEN)
@blp.alt_response(404, schema="Error", description="Unknown key.")
def revoke_key(key_id):
    try:
        accounts.revoke_key(key_id)
    except accounts.AccountError as error:
        _abort_for(error)


@blp.route("/me", methods=["GET"])
@blp.doc(summary="The key making this request", description="Any valid key.")
@require_api_key
@blp.response(200, MeSchema)
@blp.alt_response(401, **UNAUTHORIZED)
def me():
    return g.api_key
