"""Outgoing mail and job notifications, against a real SMTP server on 127.0.0.1 (aiosmtpd).

Settings round trip (the password sealed at rest, never returned), a test message
(plain, STARTTLS and TLS, with AUTH), failures with the server's reason, and the
emails of jobs that complete, complete with warnings and fail: to the chosen users
only, with counts, first errors and the job's link, without any secret, once.
"""
from __future__ import annotations

import email
import email.policy
import secrets
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from conftest import ApiClient
from localservers import free_ports
from support.objects import put_objects
from support.waiting import wait_for

SMTP_USER = "cloudmover-mailer"
SMTP_PASSWORD = "smtp-" + secrets.token_urlsafe(18)
SENDER = "cloudmover@example.com"
FINAL = ("complete", "complete_with_warnings", "failed", "cancelled")
REGION = "us-east-1"


# -- a real SMTP server --------------------------------------------------------------
@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    login: str | None

    @property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)

    @property
    def text(self) -> str:
        """Headers and the decoded body: what a reader sees, whatever the transfer encoding."""
        message = self.message
        text = "\n".join(f"{k}: {v}" for k, v in message.items()) + "\n" + message.get_content()
        return text.replace("\r\n", "\n")


class Inbox:
    """Handler of the test SMTP server: accepts mail for anyone but nobody@…, keeps it all."""

    def __init__(self):
        self.messages: list[Received] = []
        self.logins: list[tuple[str, bool]] = []
        self._lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("nobody@"):
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        login = session.auth_data.decode() if session.authenticated and isinstance(session.auth_data, bytes) else None
        with self._lock:
            self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content, login))
        return "250 Message accepted"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == SMTP_USER.encode()
              and auth_data.password == SMTP_PASSWORD.encode())
        with self._lock:
            self.logins.append((auth_data.login.decode() if isinstance(auth_data, LoginPassword) else "?", ok))
        return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)

    def to(self, address: str) -> list[Received]:
        return [m for m in self.messages if m.rcpt_tos == [address]]


@dataclass
class SmtpServer:
    port: int
    inbox: Inbox


@pytest.fixture
def smtp():
    """Factory: an SMTP server on 127.0.0.1 that allows AUTH with SMTP_USER/SMTP_PASSWORD
    (over plain text unless TLS is asked for)."""
    controllers = []

    def start(**options) -> SmtpServer:
        inbox = Inbox()
        options.setdefault("auth_require_tls", False)
        controller = Controller(inbox, hostname="127.0.0.1", port=free_ports(1)[0],
                                authenticator=inbox.authenticate, **options)
        controller.start()
        controllers.append(controller)
        return SmtpServer(controller.port, inbox)

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for 127.0.0.1 (the head node's own maker of them)."""
    from headnode.server import ensure_certificate
    return ensure_certificate(str(tmp_path / "smtp-tls"), "127.0.0.1")


def server_context(certificate) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


def settings(port: int, **changes) -> dict:
    body = {"host": "127.0.0.1", "port": port, "security": "none", "username": SMTP_USER,
            "password": SMTP_PASSWORD, "sender": SENDER}
    body.update(changes)
    return body


def root_of(rest: ApiClient) -> str:
    return rest.base[:-len("/api/v1")]


def add_users(rest: ApiClient, *rows: tuple[str, str, str | None]) -> dict[str, int]:
    """Users (name, role, email) with an admin-assigned password; name -> id."""
    created = rest.post("/users", json={"users": [
        {"username": name, "password": f"initial-{name}-password", "role": role, "email": address}
        for name, role, address in rows]})
    assert created.status_code == 201, created.text
    return {user["username"]: user["id"] for user in created.json()}


def token_of(node, name: str) -> str:
    """``name`` chooses their own password (as at first sign-in) and takes an API token."""
    from headnode.accounts import AccountService
    from headnode.models import User
    accounts = AccountService(node.config)
    user = accounts.change_password(User.get(User.username == name), current=f"initial-{name}-password",
                                    new=f"{name} chose {secrets.token_urlsafe(12)}")
    return accounts.issue_token(user, user.id)


def database_bytes(node) -> bytes:
    """The database file and its write-ahead log, as they are on disk."""
    path = Path(node.config["DATABASE"])
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


# -- settings -------------------------------------------------------------------------
def test_settings_round_trip_keeps_the_password_sealed(head_node, api, caplog):
    node = head_node(FLEET="none")
    rest = api(node)
    assert rest.get("/mail-settings").json() == {"configured": False, "host": "", "port": 587,
                                                 "security": "starttls", "username": "", "sender": "",
                                                 "has_password": False}

    saved = rest.put("/mail-settings", json=settings(2525, security="starttls"))
    assert saved.status_code == 200, saved.text
    shown = {"configured": True, "host": "127.0.0.1", "port": 2525, "security": "starttls",
             "username": SMTP_USER, "sender": SENDER, "has_password": True}
    assert saved.json() == shown
    assert rest.get("/mail-settings").json() == shown

    kept = rest.put("/mail-settings", json=settings(2525, security="starttls", password=None,
                                                    sender="robot@example.com"))
    assert kept.status_code == 200 and kept.json() == {**shown, "sender": "robot@example.com"}
    sealed = node.mail.settings().sealed_password
    assert node.mail.sealer.unseal_text(sealed) == SMTP_PASSWORD

    moved = rest.put("/mail-settings", json=settings(2525, security="starttls", password=None,
                                                     host="mail.elsewhere.example"))
    assert moved.status_code == 400 and "Enter the password again" in moved.json()["message"]
    assert rest.get("/mail-settings").json()["host"] == "127.0.0.1"

    plain_port = rest.put("/mail-settings", json=settings(None, security="tls"))
    assert plain_port.json()["port"] == 465   # the security's usual port when none is given
    for bad, reason in ((settings(25, sender="not an address"), "is not an email address"),
                        (settings(25, host="smtp example com"), "is not a host name"),
                        (settings(25, username="", password="orphan-password"), "Give the user name")):
        refused = rest.put("/mail-settings", json=bad)
        assert refused.status_code == 400 and reason in refused.json()["message"], refused.text
    assert rest.put("/mail-settings", json=settings(25, security="ssl-please")).status_code == 422

    disk = database_bytes(node)
    assert node.mail.settings().sealed_password.encode() in disk   # the right file was read
    assert SMTP_PASSWORD.encode() not in disk and b"orphan-password" not in disk
    audit = rest.get("/audit").json()
    assert any(event["action"] == "mail_settings_changed" for event in audit)
    answers = [saved.text, kept.text, moved.text, plain_port.text, str(audit), caplog.text]
    assert not any(SMTP_PASSWORD in text for text in answers)


def test_only_admins_manage_mail_and_runners_see_who_can_be_told(head_node, api):
    node = head_node(FLEET="none")
    rest = api(node)
    ids = add_users(rest, ("alice", "wrangler", "alice@example.com"), ("bob", "viewer", "bob@example.com"),
                    ("carol", "viewer", None), ("dave", "admin", "dave@example.com"))
    alice = ApiClient(rest.base, token_of(node, "alice"))
    bob = ApiClient(rest.base, token_of(node, "bob"))

    for client, allowed in ((alice, False), (bob, False), (rest, True)):
        assert (client.get("/mail-settings").status_code == 200) is allowed
        assert (client.put("/mail-settings", json=settings(25)).status_code == 200) is allowed
    assert alice.post("/mail-settings/test", json={"to": "x@example.com"}).status_code == 403
    assert bob.get("/recipients").status_code == 403

    listed = alice.get("/recipients")
    assert listed.status_code == 200
    assert listed.json() == [{"username": "alice", "has_email": True}, {"username": "bob", "has_email": True},
                             {"username": "carol", "has_email": False}, {"username": "dave", "has_email": True}]
    assert "@" not in listed.text   # names are enough to choose; addresses stay with admins
    rest.post(f"/users/{ids['bob']}/suspend").raise_for_status()
    assert "bob" not in [r["username"] for r in rest.get("/recipients").json()]

    page = requests.get(root_of(rest) + "/admin/mail", headers=rest.session.headers, timeout=30)
    assert page.status_code == 200 and 'id="mail-form"' in page.text and "/static/mail.js" in page.text
    assert "<script>" not in page.text and "style=" not in page.text   # the CSP forbids inline code
    assert requests.get(root_of(rest) + "/admin/mail", headers=alice.session.headers, timeout=30).status_code == 403
    help_page = requests.get(root_of(rest) + "/help/mail", headers=alice.session.headers, timeout=30)
    assert help_page.status_code == 200 and "STARTTLS" in help_page.text
    assert requests.get(root_of(rest) + "/static/mail.js", timeout=30).status_code == 200


# -- sending ---------------------------------------------------------------------------
def test_a_test_message_arrives_signed_in(head_node, api, smtp):
    node = head_node(FLEET="none")
    rest = api(node)
    server = smtp()
    rest.put("/mail-settings", json=settings(server.port)).raise_for_status()

    sent = rest.post("/mail-settings/test", json={"to": "ops@example.com"})

    assert sent.status_code == 200, sent.text
    assert sent.json() == {"sent_to": "ops@example.com"}
    [received] = server.inbox.messages
    assert received.rcpt_tos == ["ops@example.com"] and received.mail_from == SENDER
    assert received.login == SMTP_USER and server.inbox.logins == [(SMTP_USER, True)]
    message = received.message
    assert message["Subject"] == "CloudMover test message" and message["To"] == "ops@example.com"
    assert SENDER in message["From"] and message["Message-ID"]
    assert "operator" in received.text and f"127.0.0.1:{server.port}" in received.text
    assert SMTP_PASSWORD not in received.text and SMTP_PASSWORD.encode() not in received.raw
    assert any(e["action"] == "mail_test_sent" and e["target"] == "ops@example.com"
               for e in rest.get("/audit").json())


@pytest.mark.parametrize("case", ["wrong port", "wrong password", "TLS to a plain server", "no STARTTLS",
                                  "refused recipient", "not configured"])
def test_a_failed_test_message_says_why(case, head_node, api, smtp):
    node = head_node(FLEET="none")
    rest = api(node)
    server = smtp()
    closed_port = free_ports(1)[0]
    body, to, expected = {
        "wrong port": (settings(closed_port), "ops@example.com",
                       [f"127.0.0.1:{closed_port} failed", "connection refused"]),
        "wrong password": (settings(server.port, password="not-the-password"), "ops@example.com",
                           ["authentication failed", "535"]),
        "TLS to a plain server": (settings(server.port, security="tls"), "ops@example.com",
                                  ["TLS handshake failed", "check the port and the security setting"]),
        "no STARTTLS": (settings(server.port, security="starttls"), "ops@example.com",
                        ["does not offer", "STARTTLS"]),
        "refused recipient": (settings(server.port), "nobody@example.com",
                              ["refused the recipient", "550 5.1.1 No such mailbox here"]),
        "not configured": (None, "ops@example.com", ["not configured"]),
    }[case]
    if body is not None:
        rest.put("/mail-settings", json=body).raise_for_status()

    answer = rest.post("/mail-settings/test", json={"to": to})

    assert answer.status_code == 400, answer.text
    for words in expected:
        assert words in answer.json()["message"], answer.json()
    assert "not-the-password" not in answer.text and SMTP_PASSWORD not in answer.text
    assert server.inbox.messages == []


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_tls_checks_the_certificate_and_then_signs_in(security, head_node, api, smtp, certificate):
    from headnode.mail import MailService
    node = head_node(FLEET="none")
    rest = api(node)
    tls = server_context(certificate)
    if security == "starttls":   # AUTH only once the connection is encrypted
        server = smtp(tls_context=tls, require_starttls=True, auth_required=True, auth_require_tls=True)
    else:
        server = smtp(ssl_context=tls)
    rest.put("/mail-settings", json=settings(server.port, security=security)).raise_for_status()

    untrusted = rest.post("/mail-settings/test", json={"to": "ops@example.com"})
    assert untrusted.status_code == 400
    assert "certificate was not accepted" in untrusted.json()["message"], untrusted.json()
    assert server.inbox.messages == [] and server.inbox.logins == []

    trusting = MailService(node.config, node.mail.sealer,
                           tls_context=lambda: ssl.create_default_context(cafile=certificate[0]))
    trusting.send_test(_operator(), "ops@example.com")
    [received] = server.inbox.messages
    assert received.rcpt_tos == ["ops@example.com"] and received.login == SMTP_USER


def test_a_server_that_never_answers_times_out(head_node):
    from headnode.mail import MailFailed, MailService
    node = head_node(FLEET="none")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)   # connections complete in the backlog; nobody ever greets them
    try:
        patient = MailService(node.config, node.mail.sealer, timeout=0.5)
        node.mail.save(_operator(), _form(silent.getsockname()[1]))
        with pytest.raises(MailFailed, match="no answer within 0.5 seconds"):
            patient.send_test(_operator(), "ops@example.com")
    finally:
        silent.close()


def _operator():
    from headnode.auth import OPERATOR
    return OPERATOR


def _form(port: int):
    from headnode.mail import MailForm
    return MailForm(host="127.0.0.1", port=port, security="none", sender=SENDER)


# -- job notifications -------------------------------------------------------------


def wait_state(rest: ApiClient, job_id: int, states, timeout: float = 120.0) -> dict:
    def reached():
        job = rest.get(f"/jobs/{job_id}").json()
        return job if job["state"] in states else None
    return wait_for(reached, timeout=timeout, what=f"job {job_id} to reach {states}")


def job_log(rest: ApiClient, job_id: int) -> list[str]:
    return [line["message"] for line in rest.get(f"/jobs/{job_id}/log", params={"limit": 1000}).json()]


def test_finished_jobs_email_the_chosen_users_once(head_node, api, smtp, buckets, s3_env, start_worker):
    node_secret, node_token = secrets.token_urlsafe(32), "cm-node-" + secrets.token_urlsafe(24)
    node = head_node(FLEET="none", SECRET_KEY=node_secret, API_TOKEN=node_token,
                     PUBLIC_URL="https://cloudmover.example.com:9090/")
    rest = api(node)
    server = smtp()
    rest.put("/mail-settings", json=settings(server.port)).raise_for_status()
    ids = add_users(rest, ("alice", "wrangler", "alice@example.com"), ("bob", "viewer", "bob@example.com"),
                    ("carol", "viewer", None), ("dave", "admin", "dave@example.com"))
    alice_token = token_of(node, "alice")
    alice = ApiClient(rest.base, alice_token)
    source, dest = buckets
    for name, bucket in (("src", source), ("dst", dest)):
        folder = rest.post("/folders", json={"name": name, "bucket": bucket, "region": s3_env.region,
                                             "endpoint_url": s3_env.endpoint_url, "access_type": "keys",
                                             "access_key_id": s3_env.access_key,
                                             "secret_access_key": s3_env.secret_key})
        assert folder.status_code == 201, folder.text
        rest.put(f"/folders/{folder.json()['id']}/grants", json={"users": [ids["alice"]]}).raise_for_status()
    client = s3_env.client()
    put_objects(client, source, {**{f"ok/{n}": b"x" * (100 + n) for n in range(3)},
                                 **{f"warn/{n:02d}": b"w" * 50 for n in range(3)},
                                 **{f"fail/{n:02d}": b"f" * 10 for n in range(12)}})

    def submit(path: str, name: str, notify: list[str]) -> int:
        created = alice.post("/jobs", json={"source": f"folder:src/{path}/", "destination": f"folder:dst/{path}/",
                                            "name": name, "notify": notify})
        assert created.status_code == 201, created.text
        return created.json()["id"]
    ok = submit("ok", "Nightly photos", ["alice", "dave", "carol"])
    warn = submit("warn", "Warn me", ["alice"])
    fail = submit("fail", "Doomed", ["dave", "ghost"])
    for job_id in (ok, warn, fail):   # planned, not yet copied: nothing drains the queue yet
        wait_state(rest, job_id, ("running",))
    client.delete_object(Bucket=source, Key="warn/01")
    for n in range(12):
        client.delete_object(Bucket=source, Key=f"fail/{n:02d}")
    start_worker(node)
    states = {job_id: wait_state(rest, job_id, FINAL, timeout=240)["state"] for job_id in (ok, warn, fail)}
    assert states == {ok: "complete", warn: "complete_with_warnings", fail: "failed"}

    wait_for(lambda: len(server.inbox.messages) >= 4, timeout=60, what="four notifications")
    assert node.notifier.drain(timeout=60)
    inbox = server.inbox
    assert sorted((m.rcpt_tos[0], m.message["Subject"]) for m in inbox.messages) == [
        ("alice@example.com", 'CloudMover: job "Nightly photos" completed'),
        ("alice@example.com", 'CloudMover: job "Warn me" completed with warnings'),
        ("dave@example.com", 'CloudMover: job "Doomed" failed'),
        ("dave@example.com", 'CloudMover: job "Nightly photos" completed')]
    assert inbox.to("bob@example.com") == []   # not chosen; carol has no address, ghost does not exist

    [complete] = [m for m in inbox.to("dave@example.com") if "Nightly" in m.message["Subject"]]
    text = complete.text
    assert "Objects copied:           3" in text and "Objects failed:           0" in text
    assert f"Bytes copied:             {100 + 101 + 102:,}" in text
    assert f"The job: https://cloudmover.example.com:9090/jobs/{ok}\n" in text
    assert "First errors" not in text and complete.message["To"] == "dave@example.com"

    [warned] = [m for m in inbox.to("alice@example.com") if "Warn me" in m.message["Subject"]]
    failures = rest.get(f"/jobs/{warn}/failures").json()
    assert [f["key"] for f in failures] == ["warn/01"]
    assert "Objects copied:           2" in warned.text and "Objects failed:           1" in warned.text
    assert "First errors (1 of 1):" in warned.text and f"  warn/01: {failures[0]['reason']}" in warned.text
    assert f"https://cloudmover.example.com:9090/jobs/{warn}" in warned.text

    [failed] = [m for m in inbox.to("dave@example.com") if "Doomed" in m.message["Subject"]]
    failures = rest.get(f"/jobs/{fail}/failures").json()
    assert len(failures) == 12
    assert "Objects copied:           0" in failed.text and "Objects failed:           12" in failed.text
    assert "First errors (10 of 12):" in failed.text and "… and 2 more: see the job." in failed.text
    shown = [line.split(": ", 1)[0].strip() for line in failed.text.splitlines() if line.startswith("  fail/")]
    assert shown == [f["key"] for f in failures[:10]]
    assert f"https://cloudmover.example.com:9090/jobs/{fail}" in failed.text

    secrets_kept = (s3_env.secret_key, SMTP_PASSWORD, node_secret, node_token, alice_token)
    for received in inbox.messages:
        assert not any(secret in received.text or secret.encode() in received.raw for secret in secrets_kept)

    assert "outcome emailed to alice, dave" in job_log(rest, ok)
    assert "not emailed about the outcome: carol (no email address)" in job_log(rest, ok)
    assert "not emailed about the outcome: ghost (no such user)" in job_log(rest, fail)
    assert not any("@" in line for job_id in (ok, warn, fail) for line in job_log(rest, job_id))

    # once: the hook again, and a restarted node's look for jobs it had not notified, send nothing more
    from headnode.notifications import Notifier
    for job_id in (ok, warn, fail):
        node.service.job_finished(job_id)
    assert node.notifier.drain(timeout=60)
    restarted = Notifier(node.mail).start()
    assert restarted.drain(timeout=60)
    restarted.stop()
    assert len(inbox.messages) == 4


def test_a_send_failure_is_logged_and_a_stopped_node_notifies_at_its_next_start(head_node, api, smtp, buckets,
                                                                                 s3_env, caplog):
    from headnode.notifications import Notifier
    node = head_node(workers=1)
    rest = api(node)
    add_users(rest, ("alice", "wrangler", "alice@example.com"))
    source, dest = buckets
    put_objects(s3_env.client(), source, {"a": b"1", "b": b"22"})

    def run(path: str) -> int:
        created = rest.post("/jobs", json={"source": f"s3://{source}/", "destination": f"s3://{dest}/{path}/",
                                           "endpoint_url": s3_env.endpoint_url, "notify": ["alice"]})
        assert created.status_code == 201, created.text
        assert wait_state(rest, created.json()["id"], FINAL, timeout=240)["state"] == "complete"
        return created.json()["id"]

    unconfigured = run("one")
    assert node.notifier.drain(timeout=60)
    assert any("could not email alice about the outcome: outgoing mail is not configured" in line
               for line in job_log(rest, unconfigured))

    closed_port = free_ports(1)[0]
    rest.put("/mail-settings", json=settings(closed_port, username="", password=None)).raise_for_status()
    refused = run("two")
    assert node.notifier.drain(timeout=60)
    reason = f"Sending mail through 127.0.0.1:{closed_port} failed: connection refused"
    assert any(reason in line for line in job_log(rest, refused)), job_log(rest, refused)
    assert any(r.levelname == "WARNING" and f"job {refused}: could not email alice" in r.getMessage()
               and reason in r.getMessage() for r in caplog.records)

    server = smtp()
    rest.put("/mail-settings", json=settings(server.port)).raise_for_status()
    node.notifier.stop()   # as if the node stopped between closing the job and emailing
    pending = run("three")
    restarted = Notifier(node.mail).start()
    try:
        assert restarted.drain(timeout=60)
    finally:
        restarted.stop()
    [received] = server.inbox.messages   # the earlier two were notified (or tried) already
    assert received.rcpt_tos == ["alice@example.com"] and f"/jobs/{pending}" in received.text


# -- the page, in a real headless browser ---------------------------------------------
def test_the_notifications_page_saves_tests_and_shows_the_servers_reason(tmp_path, smtp):
    import re
    import shutil
    from playwright.sync_api import expect, sync_playwright
    from werkzeug.serving import make_server
    from headnode.app import create_app
    from headnode.models import User
    browser_path = shutil.which("chromium") or pytest.fail("Debian's chromium is needed (installed by .ci/run)")
    app = create_app({"DATA_DIR": str(tmp_path / "node"), "TESTING": True, "TLS": False, "FLEET": "none",
                      "INSTANCE_METADATA_URL": ""})
    accounts = app.extensions["cloudmover.accounts"]
    initial = accounts.ensure_initial_admin()
    accounts.change_password(User.get(User.username == "admin"), current=initial, new="admin chose this passphrase 42")
    web = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    server, closed_port = smtp(), free_ports(1)[0]
    base = f"http://127.0.0.1:{web.port}"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(base + "/signin")
            page.fill("#username", "admin")
            page.fill("#password", "admin chose this passphrase 42")
            page.click("#signin-button")
            page.goto(base + "/admin/mail")
            expect(page.locator("#mail-state")).to_have_text(re.compile("^Not configured yet"))

            page.fill("#mail-host", "127.0.0.1")
            page.select_option("#mail-security", "none")
            page.fill("#mail-port", str(server.port))
            page.fill("#mail-username", SMTP_USER)
            page.fill("#mail-password", SMTP_PASSWORD)
            page.fill("#mail-sender", SENDER)
            page.click("#mail-save")
            expect(page.locator("#notice")).to_have_text("Mail settings saved.")
            expect(page.locator("#mail-state")).to_contain_text("password stored")
            expect(page.locator("#mail-password")).to_have_value("")
            page.fill("#mail-test-to", "ops@example.com")
            page.click("#mail-test")
            expect(page.locator("#notice")).to_have_text("Test message sent to ops@example.com.")
            assert [m.rcpt_tos for m in server.inbox.messages] == [["ops@example.com"]]

            page.fill("#mail-port", str(closed_port))   # elsewhere: the password must be given again
            page.click("#mail-save")
            expect(page.locator("#notice")).to_contain_text("Enter the password again")
            page.fill("#mail-password", SMTP_PASSWORD)
            page.click("#mail-save")
            expect(page.locator("#notice")).to_have_text("Mail settings saved.")
            page.click("#mail-test")
            expect(page.locator("#notice.error")).to_have_text(
                re.compile(f"127.0.0.1:{closed_port} failed: connection refused"))
            page.screenshot(path=str(tmp_path / "notifications-page.png"), full_page=True)
            assert SMTP_PASSWORD not in page.content()
            browser.close()
    finally:
        web.shutdown()
