"""Health probes, JSON errors, the OpenAPI document and Swagger UI."""
from conftest import build_app


def test_healthz_and_readyz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ready"}


def test_readyz_is_503_when_the_database_does_not_answer(tmp_path):
    app = build_app(f"sqlite:///{tmp_path}/missing-dir/usage.db", tmp_path, migrate=False)
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["code"] == 503


def test_v1_routes_answer_503_when_the_database_is_down(tmp_path):
    app = build_app(f"sqlite:///{tmp_path}/missing-dir/usage.db", tmp_path, migrate=False)
    response = app.test_client().get("/v1/usage", headers={"X-API-Key": "usk_0123456789abcdef_" + "a" * 43})
    assert response.status_code == 503
    assert response.get_json()["message"] == "The database does not answer; retry later."


def test_driver_errors_raised_while_fetching_rows_are_503(app, client):
    """Peewee wraps driver errors of execute(), not of fetching: an interrupt
    at the statistics limit can arrive as sqlite3's own error."""
    import sqlite3

    import psycopg

    errors = {"sqlite": sqlite3.OperationalError("interrupted"),
              "psycopg": psycopg.OperationalError("server closed the connection")}

    @app.route("/fail/<driver>")
    def fail(driver):
        raise errors[driver]

    app.config["PROPAGATE_EXCEPTIONS"] = False
    for driver in errors:
        response = client.get(f"/fail/{driver}")
        assert response.status_code == 503 and response.get_json()["code"] == 503


def test_errors_are_json(app, client):
    @app.route("/boom")
    def boom():
        raise RuntimeError("boom")

    for method, path, code in (("get", "/nope", 404), ("post", "/v1/usage", 405)):
        response = getattr(client, method)(path)
        assert response.status_code == code
        assert response.is_json and response.get_json()["code"] == code

    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = client.get("/boom", headers={"X-Request-ID": "report-me-42"})
    assert response.status_code == 500
    assert response.get_json() == {"code": 500, "status": "Internal Server Error", "request_id": "report-me-42"}


def test_openapi_declares_both_key_schemes(client):
    spec = client.get("/openapi.json").get_json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearerAuth"]["scheme"] == "bearer"
    assert schemes["apiKeyHeader"] == {**schemes["apiKeyHeader"], "in": "header", "name": "X-API-Key"}
    assert {"/v1/usage", "/v1/usage/all", "/healthz", "/readyz"} <= set(spec["paths"])
    assert spec["paths"]["/healthz"]["get"]["security"] == []


def test_swagger_ui_assets_are_served_locally(client):
    page = client.get("/docs").get_data(as_text=True)
    assert "/docs/assets/swagger-ui-bundle.js" in page
    assert "//cdn" not in page and "unpkg" not in page
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js"):
        response = client.get(f"/docs/assets/{asset}")
        assert response.status_code == 200 and len(response.data) > 1000
        response.close()
