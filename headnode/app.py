"""``create_app``: the head node's Flask application.

Nothing is built at import time. The app serves the web UI (``views``) and the
REST API with its OpenAPI document (``/api/v1/openapi.json``) over one service
layer (jobs, accounts, folders), under the same role checks (``auth``).
"""
from __future__ import annotations

import datetime as dt

from flask import Flask

import ui
from pipeline import errors
from pipeline.credentials import Sealer
from headnode import api, api_accounts, api_admin, api_folders, auth, views
from headnode import api_mail, views_mail
from headnode import api_backup, views_backup
from headnode.accounts import AccountService
from headnode.config import ensure_secret
from headnode.folders import FolderService

MIN_SECRET_LENGTH = 32


def create_app(config: dict | None = None, *, node=None) -> Flask:
    if node is None:
        from headnode.node import HeadNode
        node = HeadNode(config)
    secret = node.config["SECRET_KEY"]
    if not node.config["TESTING"] and len(secret or "") < MIN_SECRET_LENGTH:
        raise RuntimeError(f"refusing to start: SECRET_KEY must be a random string of at least "
                           f"{MIN_SECRET_LENGTH} characters (leave it unset to have one made in DATA_DIR)")
    app = Flask(__name__, template_folder=ui.TEMPLATES, static_folder=ui.STATIC, static_url_path="/static")
    app.config.update(
        API_TITLE="CloudMover", API_VERSION="v1", OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1", OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={"components": {"securitySchemes": {
            "token": {"type": "http", "scheme": "bearer"}}}, "security": [{"token": []}]},
        API_TOKEN=ensure_secret(node.config, "API_TOKEN", "api.token"),
        SECRET_KEY=secret, TESTING=node.config["TESTING"],
        SESSION_COOKIE_SECURE=bool(node.config["TLS"]), REMEMBER_COOKIE_SECURE=bool(node.config["TLS"]),
        SESSION_COOKIE_NAME="cloudmover_session", PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=12),
        MAX_CONTENT_LENGTH=16 << 20)
    accounts = AccountService(node.config)
    auth.init_app(app, accounts)
    rest = api.RestApi(app)
    for blueprint in (api.blp, api_accounts.blp, api_folders.blp, api_admin.blp, api_mail.blp):
        rest.register_blueprint(blueprint)
    rest.register_blueprint(api_backup.blp)
    app.register_blueprint(views.pages)
    app.register_blueprint(views_mail.pages)
    app.register_blueprint(views_backup.pages)
    app.register_error_handler(errors.PipelineError, api.render_pipeline_error)
    _mark_openapi_public(app)
    app.extensions["cloudmover.jobs"] = node.service
    app.extensions["cloudmover.folders"] = FolderService(node.config, Sealer(secret))
    app.extensions["cloudmover.node"] = node
    app.extensions["cloudmover.mail"] = node.mail
    return app


def _mark_openapi_public(app: Flask) -> None:
    """The API's description is public, as any published API document is; it holds no data."""
    for endpoint, view in list(app.view_functions.items()):
        if endpoint.startswith("api-docs.") and auth.declared_roles(view) is None:
            app.view_functions[endpoint] = auth.public(_plain(view))


def _plain(view):
    """A function calling ``view`` (a bound method, which takes no attributes)."""
    def call(*args, **kwargs):
        return view(*args, **kwargs)
    return call
