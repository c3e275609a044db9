"""``create_app``: the head node's Flask application.

Nothing is built at import time. The app serves the REST API and its OpenAPI
document (``/api/v1/openapi.json``) over the job service of a ``HeadNode``.
"""
from __future__ import annotations

from flask import Flask
from flask_smorest import Api

from pipeline import errors
from headnode import api
from headnode.config import ensure_secret


def create_app(config: dict | None = None, *, node=None) -> Flask:
    if node is None:
        from headnode.node import HeadNode
        node = HeadNode(config)
    app = Flask(__name__)
    app.config.update(
        API_TITLE="CloudMover", API_VERSION="v1", OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1", OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={"components": {"securitySchemes": {
            "token": {"type": "http", "scheme": "bearer"}}}, "security": [{"token": []}]},
        API_TOKEN=ensure_secret(node.config, "API_TOKEN", "api.token"),
        SECRET_KEY=node.config["SECRET_KEY"], TESTING=node.config["TESTING"])
    rest = Api(app)
    rest.register_blueprint(api.blp)
    app.register_error_handler(errors.PipelineError, api.render_pipeline_error)
    app.extensions["cloudmover.jobs"] = node.service
    app.extensions["cloudmover.node"] = node
    return app
