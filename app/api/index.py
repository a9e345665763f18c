"""`GET /`: where to go from here, for a person who opened the service's address."""
from marshmallow import Schema, fields

from .blueprint import Blueprint

blp = Blueprint("index", __name__, description="Where to start (no API key).")

LINKS = {
    "dashboard": "/dashboard",
    "docs": "/docs",
    "openapi": "/openapi.json",
    "health": "/healthz",
    "ready": "/readyz",
}


class IndexSchema(Schema):
    service = fields.String(required=True, metadata={"example": "usage-service"})
    links = fields.Dict(keys=fields.String(), values=fields.String(), required=True,
                        metadata={"description": "The dashboard, Swagger UI, the OpenAPI document and the probes."})


@blp.route("/")
@blp.doc(operationId="getIndex", security=[], summary="Links to the documentation and probes",
         description="Answers with links to the usage dashboard (`/dashboard`), Swagger UI (`/docs`), "
                     "the OpenAPI document and the probes.")
@blp.response(200, IndexSchema)
def index():
    return {"service": "usage-service", "links": LINKS}
