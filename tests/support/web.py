"""Signing in to a served head node over real HTTP, as a browser does (session
cookie plus the page's CSRF token), or with an API token."""
from __future__ import annotations

import re
import threading

import requests

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


class WebUser:
    """A browser-like client: cookies, and the CSRF token of the last page it loaded."""

    def __init__(self, base: str, *, verify: bool | str = True):
        self.base = base.rstrip("/")
        self.session = requests.Session()
        self.session.verify = verify
        self.csrf: str | None = None

    def page(self, path: str, **kw) -> requests.Response:
        response = self.session.get(self.base + path, timeout=30, **kw)
        found = CSRF_META.search(response.text)
        if found:
            self.csrf = found.group(1)
        return response

    def signin(self, username: str, password: str) -> requests.Response:
        self.page("/signin")
        return self.api("POST", "/session", json={"username": username, "password": password})

    def api(self, method: str, path: str, *, csrf: bool = True, **kw) -> requests.Response:
        if self.csrf is None:
            self.page("/signin")
        headers = kw.pop("headers", {})
        if csrf and method.upper() not in ("GET", "HEAD"):
            headers["X-CSRFToken"] = self.csrf
        return self.session.request(method, f"{self.base}/api/v1{path}", headers=headers, timeout=60, **kw)


def token_client(base: str, token: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return session


class ServedApp:
    """A head node's app served on a free port over real HTTP, stopped by ``close``."""

    def __init__(self, app):
        from werkzeug.serving import make_server
        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.base = f"http://127.0.0.1:{self.server.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def accounts(self):
        return self.app.extensions["cloudmover.accounts"]

    def close(self) -> None:
        self.server.shutdown()


def admin_ready(served: ServedApp, password: str = "orange-tractor-meadow-61") -> WebUser:
    """Signed in as the initial admin, with the forced password change done."""
    initial = served.accounts.ensure_initial_admin()
    admin = WebUser(served.base)
    assert admin.signin("admin", initial).status_code == 200
    changed = admin.api("POST", "/me/password", json={"current": initial, "new": password})
    assert changed.status_code == 200, changed.text
    return admin


def add_user(admin: WebUser, served: ServedApp, username: str, role: str, *, email: str | None = None,
             password: str = "violet-canyon-river-88") -> WebUser:
    """Add a user as ``admin`` and sign them in, the first password change done."""
    initial = f"initial-{username}-pw"
    added = admin.api("POST", "/users", json={"users": [{"username": username, "password": initial,
                                                          "role": role, "email": email}]})
    assert added.status_code == 201, added.text
    user = WebUser(served.base)
    assert user.signin(username, initial).status_code == 200
    changed = user.api("POST", "/me/password", json={"current": initial, "new": password})
    assert changed.status_code == 200, changed.text
    return user
