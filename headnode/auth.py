"""Who is calling, and may they: sign-in sessions, API tokens, roles, CSRF.

Every endpoint declares the roles it admits with ``@allow(...)`` (or
``@public``); an endpoint that declares nothing is refused to everyone, so a
new route cannot be left open by mistake. Callers are a signed-in session
(browser; state-changing requests need the CSRF token), a user's API token
(``Authorization: Bearer cm_…``), or the node's own token from DATA_DIR
(the local operator, acting as an admin). A user who must change their
password reaches nothing else until they have.
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass
from urllib.parse import quote

from flask import current_app, g, jsonify, redirect, render_template, request
from flask_login import LoginManager, current_user, login_user
from flask_wtf.csrf import CSRFError, CSRFProtect

from headnode.accounts import AccountService

ROLE_ORDER = ("admin", "wrangler", "viewer")
EVERYONE = ROLE_ORDER
RUNNERS = ("admin", "wrangler")
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
                               "object-src 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}

csrf = CSRFProtect()
login_manager = LoginManager()


@dataclass(frozen=True)
class Principal:
    """The caller of a request: a user, or the node's operator token."""
    id: int | None
    username: str
    role: str
    email: str | None = None
    must_change_password: bool = False
    session_id: str | None = None
    via: str = "session"            # session | token | operator

    # flask-login's user protocol
    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str | None:
        return self.session_id

    @classmethod
    def of(cls, user, via: str) -> "Principal":
        return cls(id=user.id, username=user.username, role=user.role, email=user.email,
                   must_change_password=user.must_change_password,
                   session_id=f"{user.id}:{user.session_epoch}", via=via)


OPERATOR = Principal(id=None, username="operator", role="admin", via="operator")


def allow(*roles: str, before_password_change: bool = False):
    """Admit callers with one of ``roles`` to the decorated view."""
    unknown = set(roles) - set(ROLE_ORDER)
    if unknown:
        raise ValueError(f"unknown role(s) {unknown}")

    def mark(view):
        view.cloudmover_roles = tuple(roles)
        view.cloudmover_before_password_change = before_password_change
        return view
    return mark


def public(view):
    view.cloudmover_roles = ("public",)
    view.cloudmover_before_password_change = True
    return view


def _marked(view, name: str, default=None):
    """What ``allow``/``public`` marked on ``view`` or on a function it wraps."""
    while view is not None:
        if hasattr(view, name):
            return getattr(view, name)
        view = getattr(view, "__wrapped__", None)
    return default


def declared_roles(view) -> tuple[str, ...] | None:
    return _marked(view, "cloudmover_roles")


def init_app(app, accounts: AccountService) -> None:
    app.config.update(WTF_CSRF_CHECK_DEFAULT=False, WTF_CSRF_TIME_LIMIT=None,
                      SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      REMEMBER_COOKIE_HTTPONLY=True, REMEMBER_COOKIE_SAMESITE="Lax")
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.session_protection = "basic"
    login_manager.user_loader(lambda session_id: _session_principal(accounts, session_id))
    app.extensions["cloudmover.accounts"] = accounts
    app.before_request(_check_access)
    app.after_request(_secure_headers)
    app.register_error_handler(CSRFError, _csrf_refused)


def sign_in(user) -> Principal:
    principal = Principal.of(user, "session")
    login_user(principal)
    return principal


def caller() -> Principal | None:
    return g.get("principal")


def _session_principal(accounts: AccountService, session_id: str) -> Principal | None:
    user = accounts.by_session(session_id)
    return Principal.of(user, "session") if user else None


def _bearer_principal() -> Principal | None | bool:
    """The token's principal; None without a token; False for a wrong one."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None
    token = header[7:].strip()
    node_token = current_app.config.get("API_TOKEN")
    if node_token and hmac.compare_digest(token.encode(), node_token.encode()):
        return OPERATOR
    user = current_app.extensions["cloudmover.accounts"].by_token(token)
    return Principal.of(user, "token") if user else False


def _is_api() -> bool:
    return request.path.startswith("/api/")


def _refuse(status: int, code: str, message: str):
    if _is_api():
        response = jsonify({"code": code, "message": message, "status": status})
        response.status_code = status
        return response
    return render_template("error.html", status=status, message=message), status


def _check_access():
    if request.endpoint is None:
        return None   # 404 / 405 follow
    view = current_app.view_functions.get(request.endpoint)
    roles = ("public",) if request.endpoint == "static" else declared_roles(view)
    if roles is None:
        return _refuse(403, "forbidden", "This endpoint declares no roles, so nobody may use it.")
    bearer = _bearer_principal()
    if bearer is False:
        return _refuse(401, "unauthorized", "The API token is wrong or its user is suspended.")
    principal = bearer or (current_user if current_user.is_authenticated else None)
    g.principal = principal
    if principal is None and roles != ("public",):
        if _is_api():
            return _refuse(401, "unauthorized", "Sign in, or send an API token (Authorization: Bearer …).")
        return redirect(f"/signin?next={quote(request.full_path.rstrip('?'), safe='/?=&')}")
    if bearer is None and request.method in UNSAFE:
        csrf.protect()   # cookies ride along on cross-site requests; bearer tokens do not
    if roles == ("public",):
        return None
    if principal.must_change_password and not _marked(view, "cloudmover_before_password_change", False):
        if _is_api():
            return _refuse(403, "password_change_required", "Change your password before anything else.")
        return redirect("/account/password")
    if principal.role not in roles:
        return _refuse(403, "forbidden", f"Your role ({principal.role}) may not do this.")
    return None


def _secure_headers(response):
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    if _is_api() or response.mimetype == "text/html":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _csrf_refused(error: CSRFError):
    return _refuse(400, "csrf", "The request did not carry this site's CSRF token (it may have come from "
                                "another site, or the page is stale): reload the page and try again.")
