"""Users and sign-in over real HTTP: first start, forced password change, the
last admin, suspension, lock-out after failed sign-ins, CSRF, and the audit log."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import requests

from support.web import WebUser, add_user, admin_ready


@pytest.fixture
def served(web):
    return web()


def test_first_start_writes_the_initial_password_for_the_owner_only(served):
    initial = served.accounts.ensure_initial_admin()
    path = Path(served.app.extensions["cloudmover.node"].config["DATA_DIR"]) / "initial-admin-password"
    assert path.read_text().strip() == initial
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert served.accounts.ensure_initial_admin() is None   # only once


def test_the_initial_password_is_the_instance_id_on_ec2(web, tmp_path):
    from support.imds import MetadataStub   # the IMDSv2 stub the worker bootstrap tests use
    with MetadataStub({"instance-id": "i-0abc1234def567890"}) as metadata:
        served = web(INSTANCE_METADATA_URL=metadata.url)
        assert served.accounts.ensure_initial_admin() == "i-0abc1234def567890"


def test_a_new_admin_must_change_the_password_before_anything_else(served):
    initial = served.accounts.ensure_initial_admin()
    admin = WebUser(served.base)
    assert admin.signin("admin", initial).json()["must_change_password"] is True
    blocked = admin.api("GET", "/jobs")
    assert blocked.status_code == 403 and blocked.json()["code"] == "password_change_required"
    assert admin.page("/", allow_redirects=False).headers["Location"] == "/account/password"
    weak = admin.api("POST", "/me/password", json={"current": initial, "new": "password1"})
    assert weak.status_code == 400 and "weak" in weak.json()["message"]
    strength = admin.api("POST", "/password-strength", json={"password": "password1"}).json()
    assert strength["label"] == "weak"
    assert admin.api("POST", "/password-strength", json={"password": "orange-tractor-meadow-61"}).json()["label"] == "strong"
    assert admin.api("POST", "/me/password", json={"current": initial, "new": "orange-tractor-meadow-61"}).status_code == 200
    assert admin.api("GET", "/jobs").status_code == 200
    me = admin.api("GET", "/me").json()
    assert me["must_change_password"] is False and me["admin_assigned"] is False and me["password_strength"] == "strong"


def test_passwords_are_stored_as_salted_argon2id_hashes(served):
    from headnode.models import User
    admin = admin_ready(served)
    add_user(admin, served, "wendy", "wrangler")
    add_user(admin, served, "walt", "wrangler")   # same password as wendy
    hashes = {u.username: u.password_hash for u in User.select()}
    assert all(h.startswith("$argon2id$") for h in hashes.values())
    assert hashes["wendy"] != hashes["walt"]      # salted


def test_admins_add_several_users_at_once_or_none(served):
    admin = admin_ready(served)
    rows = [{"username": "ann", "password": "first-pass-123", "role": "wrangler", "email": "ann@example.org"},
            {"username": "vic", "password": "second-pass-456", "role": "viewer"}]
    added = admin.api("POST", "/users", json={"users": rows})
    assert added.status_code == 201
    assert {(u["username"], u["role"], u["admin_assigned"]) for u in added.json()} == {
        ("ann", "wrangler", True), ("vic", "viewer", True)}
    clash = admin.api("POST", "/users", json={"users": [
        {"username": "bob", "password": "third-pass-789", "role": "viewer"},
        {"username": "ann", "password": "again-pass-000", "role": "viewer"}]})
    assert clash.status_code == 400 and "already exists" in clash.json()["message"]
    names = [u["username"] for u in admin.api("GET", "/users").json()]
    assert "bob" not in names   # all or none


def test_the_last_admin_cannot_be_demoted_suspended_or_deleted(served):
    admin = admin_ready(served)
    me = admin.api("GET", "/me").json()["id"]
    for method, path, body in (("PATCH", f"/users/{me}", {"role": "viewer"}), ("POST", f"/users/{me}/suspend", None),
                               ("DELETE", f"/users/{me}", None)):
        refused = admin.api(method, path, json=body)
        assert refused.status_code == 400, (method, path)
        assert "last active admin" in refused.json()["message"]
    assert admin.api("GET", "/me").json()["role"] == "admin"
    # with a second admin, the first may step down
    second = add_user(admin, served, "ada", "admin")
    assert admin.api("PATCH", f"/users/{me}", json={"role": "wrangler"}).status_code == 200
    ada = second.api("GET", "/me").json()["id"]
    assert second.api("POST", f"/users/{ada}/suspend").status_code == 400   # now ada is the last one


def test_a_suspended_user_cannot_sign_in_or_use_the_api(served):
    admin = admin_ready(served)
    wendy = add_user(admin, served, "wendy", "wrangler")
    token = wendy.api("POST", "/me/token").json()["token"]
    with_token = requests.get(f"{served.base}/api/v1/jobs", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert with_token.status_code == 200
    wendy_id = wendy.api("GET", "/me").json()["id"]
    assert admin.api("POST", f"/users/{wendy_id}/suspend").json()["active"] is False
    assert wendy.api("GET", "/jobs").status_code == 401             # her open session ended
    again = WebUser(served.base).signin("wendy", "violet-canyon-river-88")
    assert again.status_code == 401 and "suspended" in again.json()["message"]
    refused = requests.get(f"{served.base}/api/v1/jobs", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert refused.status_code == 401
    assert admin.api("POST", f"/users/{wendy_id}/enable").status_code == 200
    assert WebUser(served.base).signin("wendy", "violet-canyon-river-88").status_code == 200


def test_a_reset_password_must_be_changed_at_next_sign_in(served):
    admin = admin_ready(served)
    wendy = add_user(admin, served, "wendy", "wrangler")
    wendy_id = wendy.api("GET", "/me").json()["id"]
    reset = admin.api("POST", f"/users/{wendy_id}/password", json={"password": "temporary-99"}).json()
    assert reset["must_change_password"] and reset["admin_assigned"]
    fresh = WebUser(served.base)
    assert fresh.signin("wendy", "temporary-99").json()["must_change_password"] is True
    assert fresh.api("GET", "/jobs").json()["code"] == "password_change_required"


def test_repeated_failed_sign_ins_lock_the_account(served):
    admin_ready(served)
    intruder = WebUser(served.base)
    answers = [intruder.signin("admin", f"guess-{n}") for n in range(5)]
    assert [a.status_code for a in answers] == [401] * 5
    assert all(a.json()["message"] == "Wrong user name or password." for a in answers)
    locked = intruder.signin("admin", "orange-tractor-meadow-61")   # even the right password now waits
    assert locked.status_code == 429
    assert "Too many failed sign-ins" in locked.json()["message"] and int(locked.headers["Retry-After"]) > 0
    form = intruder.page("/signin")
    refused_form = intruder.session.post(f"{served.base}/signin", timeout=10, data={
        "username": "admin", "password": "orange-tractor-meadow-61", "csrf_token": intruder.csrf})
    assert refused_form.status_code == 429 and "Too many failed sign-ins" in refused_form.text
    assert form.status_code == 200
    failed = admin_events(served, "signin_failed")
    assert len(failed) == 5 and all(e.address == "127.0.0.1" for e in failed)


def test_unknown_users_get_the_same_answer_as_wrong_passwords(served):
    admin_ready(served)
    unknown = WebUser(served.base).signin("nobody", "whatever-123")
    assert unknown.status_code == 401 and unknown.json()["message"] == "Wrong user name or password."


def test_a_forged_cross_site_post_is_refused(served):
    admin = admin_ready(served)
    # a page on another site can make the browser send the session cookie, but cannot read the token
    forged = admin.api("POST", "/users", csrf=False, json={"users": [
        {"username": "mallory", "password": "mallory-pass-1", "role": "admin"}]})
    assert forged.status_code == 400 and forged.json()["code"] == "csrf"
    other = WebUser(served.base)
    other.page("/signin")
    stolen_token = admin.api("POST", "/users", csrf=False, headers={"X-CSRFToken": other.csrf}, json={
        "users": [{"username": "mallory", "password": "mallory-pass-1", "role": "admin"}]})
    assert stolen_token.status_code == 400
    signin_without_token = requests.post(f"{served.base}/signin", data={"username": "admin", "password": "x"},
                                         timeout=10)
    assert signin_without_token.status_code == 400
    assert "mallory" not in [u["username"] for u in admin.api("GET", "/users").json()]


def test_session_cookies_and_security_headers(web):
    served = web()
    admin = admin_ready(served)
    page = admin.page("/")
    headers = page.headers
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"
    cookie = WebUser(served.base).page("/signin").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    served_tls = web(TLS=True)
    assert served_tls.app.config["SESSION_COOKIE_SECURE"] is True


def test_the_app_refuses_to_start_without_a_real_secret_key(tmp_path):
    from headnode.app import create_app
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app({"DATA_DIR": str(tmp_path), "SECRET_KEY": "short", "FLEET": "none",
                    "INSTANCE_METADATA_URL": ""})


def test_the_audit_log_records_sign_ins_and_user_changes(served):
    admin = admin_ready(served)
    add_user(admin, served, "wendy", "wrangler")
    actions = [e["action"] for e in admin.api("GET", "/audit").json()]
    for expected in ("user_added", "signin", "password_changed"):
        assert expected in actions
    wendy = WebUser(served.base)
    wendy.signin("wendy", "violet-canyon-river-88")
    assert wendy.api("GET", "/audit").status_code == 403


def admin_events(served, action):
    from headnode.models import AuditEvent
    return list(AuditEvent.select().where(AuditEvent.action == action))
