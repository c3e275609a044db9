"""The role matrix: every route and API endpoint, called over real HTTP by each
role and by a signed-out caller. The roles each endpoint admits are written out
here, so a new endpoint fails this test until its access is decided."""
from __future__ import annotations

import re

import pytest
import requests

from support.web import WebUser, add_user, admin_ready

A, W, V = "admin", "wrangler", "viewer"
ALL = (A, W, V)
PUBLIC = "public"
# (method, rule) -> roles admitted
EXPECTED = {
    ("GET", "/api/v1/openapi.json"): PUBLIC,
    ("POST", "/api/v1/session"): PUBLIC,
    ("GET", "/signin"): PUBLIC,
    ("POST", "/signin"): PUBLIC,
    ("GET", "/help/<name>"): PUBLIC,
    ("GET", "/static/<path:filename>"): PUBLIC,
    ("DELETE", "/api/v1/session"): ALL,
    ("GET", "/api/v1/me"): ALL,
    ("POST", "/api/v1/me/password"): ALL,
    ("POST", "/api/v1/me/token"): ALL,
    ("POST", "/api/v1/password-strength"): ALL,
    ("GET", "/api/v1/jobs"): ALL,
    ("POST", "/api/v1/jobs"): (A, W),
    ("POST", "/api/v1/jobs/estimate"): (A, W),
    ("POST", "/api/v1/jobs/preflight"): (A, W),
    ("GET", "/api/v1/jobs/<int:job_id>"): ALL,
    ("POST", "/api/v1/jobs/<int:job_id>/cancel"): (A, W),
    ("POST", "/api/v1/jobs/<int:job_id>/retry"): (A, W),
    ("GET", "/api/v1/jobs/<int:job_id>/failures"): ALL,
    ("GET", "/api/v1/jobs/<int:job_id>/log"): ALL,
    ("GET", "/api/v1/users"): (A,),
    ("POST", "/api/v1/users"): (A,),
    ("PATCH", "/api/v1/users/<int:user_id>"): (A,),
    ("DELETE", "/api/v1/users/<int:user_id>"): (A,),
    ("POST", "/api/v1/users/<int:user_id>/password"): (A,),
    ("POST", "/api/v1/users/<int:user_id>/suspend"): (A,),
    ("POST", "/api/v1/users/<int:user_id>/enable"): (A,),
    ("GET", "/api/v1/audit"): (A,),
    ("GET", "/api/v1/regions"): ALL,
    ("GET", "/api/v1/folders"): ALL,
    ("POST", "/api/v1/folders"): (A,),
    ("GET", "/api/v1/folders/<int:folder_id>"): ALL,
    ("PUT", "/api/v1/folders/<int:folder_id>"): (A,),
    ("DELETE", "/api/v1/folders/<int:folder_id>"): (A,),
    ("GET", "/api/v1/folders/<int:folder_id>/grants"): (A,),
    ("PUT", "/api/v1/folders/<int:folder_id>/grants"): (A,),
    ("GET", "/api/v1/folders/<int:folder_id>/browse"): ALL,
    ("GET", "/api/v1/worker-settings"): (A,),
    ("PUT", "/api/v1/worker-settings/<region>"): (A,),
    ("DELETE", "/api/v1/worker-settings/<region>"): (A,),
    ("GET", "/api/v1/workers"): (A,),
    ("GET", "/api/v1/logs"): (A,),
    ("POST", "/signout"): ALL,
    ("GET", "/account/password"): ALL,
    ("GET", "/"): ALL,
    ("GET", "/jobs/<int:job_id>"): ALL,
    ("GET", "/jobs/new"): (A, W),
    ("GET", "/admin/users"): (A,),
    ("GET", "/admin/folders"): (A,),
    ("GET", "/admin/worker-settings"): (A,),
    ("GET", "/admin/workers"): (A,),
    ("GET", "/admin/logs"): (A,),
    ("GET", "/admin/audit"): (A,),
}
EXPECTED.update({   # notifications and backup
    ("GET", "/api/v1/mail-settings"): (A,),
    ("PUT", "/api/v1/mail-settings"): (A,),
    ("POST", "/api/v1/mail-settings/test"): (A,),
    ("GET", "/api/v1/recipients"): (A, W),
    ("GET", "/admin/mail"): (A,),
    ("POST", "/api/v1/backup"): (A,),
    ("POST", "/api/v1/restore"): (A,),
    ("DELETE", "/api/v1/restore"): (A,),
    ("GET", "/api/v1/restore"): (A,),
    ("GET", "/admin/backup"): (A,),
})
SAMPLE_ARGUMENTS = {"int": "987654", "path": "app.css", "default": "dashboard"}


def concrete(rule: str) -> str:
    def value(match):
        converter, name = match.group(1) or "default", match.group(2)
        if name == "region":
            return "eu-west-1"
        return SAMPLE_ARGUMENTS.get(converter, "x")
    return re.sub(r"<(?:(\w+):)?(\w+)>", value, rule)


def endpoints(app) -> set[tuple[str, str]]:
    return {(method, rule.rule) for rule in app.url_map.iter_rules()
            for method in rule.methods - {"HEAD", "OPTIONS"}}


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    """A served head node with one signed-in user per role (session and API token)."""
    from headnode.app import create_app
    from headnode.node import HeadNode
    from support.web import ServedApp
    node = HeadNode({"DATA_DIR": str(tmp_path_factory.mktemp("roles")), "TESTING": True, "TLS": False,
                     "FLEET": "none", "INSTANCE_METADATA_URL": ""})
    served = ServedApp(create_app(node=node))
    admin = admin_ready(served)
    users = {A: admin, W: add_user(admin, served, "wendy", W), V: add_user(admin, served, "vera", V)}
    yield served, users
    served.close()
    node.stop()


def test_every_endpoint_declares_the_roles_it_admits(matrix):
    from headnode.auth import declared_roles
    served, _ = matrix
    found = endpoints(served.app)
    assert found - set(EXPECTED) == set(), "endpoints missing from EXPECTED: decide who may use them"
    assert set(EXPECTED) - found == set(), "EXPECTED lists endpoints that no longer exist"
    for rule in served.app.url_map.iter_rules():
        roles = declared_roles(served.app.view_functions[rule.endpoint])
        if rule.endpoint != "static":
            assert roles is not None, rule.rule


def call(user: WebUser, method: str, rule: str, *, token: str | None) -> requests.Response:
    path = concrete(rule)
    body = {} if method in ("POST", "PUT", "PATCH") else None
    if rule.startswith("/api/v1/") and token:
        return requests.request(method, user.base + path, json=body, timeout=60, allow_redirects=False,
                                headers={"Authorization": f"Bearer {token}"})
    headers = {"X-CSRFToken": user.csrf} if method != "GET" else {}
    data = {"csrf_token": user.csrf} if rule in ("/signout", "/signin") else None
    return user.session.request(method, user.base + path, json=None if data else body, data=data, headers=headers,
                                timeout=60, allow_redirects=False)


@pytest.mark.parametrize("method,rule", sorted(EXPECTED), ids=lambda x: str(x))
def test_each_role_gets_through_or_gets_403(matrix, method, rule):
    served, users = matrix
    admitted = EXPECTED[(method, rule)]
    for role, user in users.items():
        token = user.api("POST", "/me/token").json()["token"]   # the API is checked with tokens too
        for via_token in (True, False):
            response = call(user, method, rule, token=token if via_token else None)
            if admitted == PUBLIC:   # a sign-in with no password is answered 401: not a role refusal
                assert response.status_code != 403, (role, via_token, response.text[:300])
            elif role in admitted:
                assert response.status_code not in (401, 403), (role, via_token, response.text[:300])
                assert "/signin" not in response.headers.get("Location", "") or rule == "/signout"
            else:
                assert response.status_code == 403, (role, via_token, response.status_code)
            if (method, rule) in (("POST", "/signout"), ("DELETE", "/api/v1/session")) and not via_token:
                user.signin(*SIGN_IN[role])   # signed out by the call: sign in again


SIGN_IN = {A: ("admin", "orange-tractor-meadow-61"), W: ("wendy", "violet-canyon-river-88"),
           V: ("vera", "violet-canyon-river-88")}


@pytest.mark.parametrize("method,rule", sorted(EXPECTED), ids=lambda x: str(x))
def test_signed_out_callers_are_sent_to_sign_in(matrix, method, rule):
    served, _ = matrix
    stranger = WebUser(served.base)
    stranger.page("/signin")
    response = call(stranger, method, rule, token=None)
    if EXPECTED[(method, rule)] == PUBLIC:
        assert response.status_code != 403 and "/signin?" not in response.headers.get("Location", "")
    elif rule.startswith("/api/"):
        assert response.status_code == 401 and response.json()["code"] == "unauthorized"
    else:
        assert response.status_code == 302 and response.headers["Location"].startswith("/signin")
