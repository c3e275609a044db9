"""Outgoing mail: the SMTP settings admins keep, and sending through them.

The settings (host, port, security: none / STARTTLS / TLS, user, password,
sender address) are one ``Setting`` row named ``mail``. The password is sealed
with the node's secret before it is stored and never returned (the API shows
``has_password``). Editing the settings without a password keeps the stored
one while the server (host, port, security) and user stay the same; pointing
them at another server needs the password again, so a stored password is never
handed to a server it was not entered for.

Sending uses smtplib with a timeout on every step, certificates verified. Its
errors are translated here, once, into ``MailFailed`` carrying the server's
reason ("authentication failed … 535 …", "connection refused", "no answer
within 20 seconds"), never the password.
"""
from __future__ import annotations

import contextlib
import re
import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid

from pipeline.credentials import Sealer
from pipeline.errors import PermanentError
from headnode import audit
from headnode.accesserrors import Refused
from headnode.models import Setting

SECURITY = ("none", "starttls", "tls")
DEFAULT_PORTS = {"none": 25, "starttls": 587, "tls": 465}
SETTING = "mail"
TIMEOUT_SECONDS = 20.0
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")   # an address: users' (accounts.py) and senders
HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})*\.?|\[?[0-9A-Fa-f:.]+\]?)$")
MAX_NAME = 256


class MailFailed(Refused):
    """The mail server could not be reached, or refused the sign-in or the message (400, with its reason)."""
    code = "mail_failed"


@dataclass(frozen=True)
class MailForm:
    """Settings as an admin submits them; a blank password keeps the stored one (same server and user)."""
    host: str
    sender: str
    port: int | None = None              # default: 25, 587 or 465 by security
    security: str = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class MailSettings:
    host: str
    port: int
    security: str
    username: str
    sender: str
    sealed_password: str | None = field(default=None, repr=False)

    def server(self) -> str:
        return f"{self.host}:{self.port}"

    def public(self) -> dict:
        """What the API shows: everything but the password."""
        return {"configured": True, "host": self.host, "port": self.port, "security": self.security,
                "username": self.username, "sender": self.sender, "has_password": bool(self.sealed_password)}


@dataclass(frozen=True)
class Outgoing:
    to: str
    subject: str
    body: str
    recipient: str = ""       # who ``to`` belongs to (a user name), for logs that must not show addresses


class MailService:
    def __init__(self, config: dict, sealer: Sealer, *, timeout: float = TIMEOUT_SECONDS,
                 tls_context=ssl.create_default_context):
        """``tls_context``: makes the SSL context for STARTTLS and TLS (tests pass one trusting
        their own certificate authority)."""
        self.config, self.sealer, self.timeout = config, sealer, timeout
        self._tls_context = tls_context

    # -- settings ------------------------------------------------------------------
    def settings(self) -> MailSettings | None:
        """The stored settings, or None while outgoing mail is not configured."""
        row = Setting.get_or_none(Setting.name == SETTING)
        if row is None or not row.value:
            return None
        value = row.value
        return MailSettings(host=value["host"], port=value["port"], security=value["security"],
                            username=value.get("username") or "", sender=value["sender"],
                            sealed_password=value.get("sealed_password"))

    def view(self) -> dict:
        found = self.settings()
        if found is None:
            return {"configured": False, "host": "", "port": DEFAULT_PORTS["starttls"], "security": "starttls",
                    "username": "", "sender": "", "has_password": False}
        return found.public()

    def save(self, actor, form: MailForm) -> dict:
        before = self.settings()
        settings, password_note = self._validated(form, before)
        Setting.insert(name=SETTING, value={
            "host": settings.host, "port": settings.port, "security": settings.security,
            "username": settings.username, "sender": settings.sender,
            "sealed_password": settings.sealed_password}).on_conflict_replace().execute()
        audit.record(actor.username, "mail_settings_changed", settings.server(),
                     f"security {settings.security}, user {settings.username or '(none)'}, "
                     f"password {password_note}, sender {settings.sender}")
        return self.view()

    def _validated(self, form: MailForm, before: MailSettings | None) -> tuple[MailSettings, str]:
        host = (form.host or "").strip()
        if not host or len(host) > 253 or not HOST.match(host):
            raise Refused(f"{host!r} is not a host name or IP address: give the mail server's name.")
        if form.security not in SECURITY:
            raise Refused(f"Unknown security {form.security!r}: choose none, starttls or tls.")
        port = form.port or DEFAULT_PORTS[form.security]
        if not 1 <= port <= 65535:
            raise Refused(f"{port} is not a port number (1 to 65535).")
        sender = (form.sender or "").strip()
        if not EMAIL.match(sender) or len(sender) > MAX_NAME:
            raise Refused(f"{sender!r} is not an email address: give the address messages are sent from.")
        username = (form.username or "").strip()
        if len(username) > MAX_NAME or any(c in username for c in "\r\n"):
            raise Refused("The user name is too long or spans lines.")
        settings = MailSettings(host=host, port=port, security=form.security, username=username, sender=sender)
        if not username:
            if form.password:
                raise Refused("Give the user name the password belongs to (or leave both empty).")
            return settings, "none"
        if form.password:
            return _with_password(settings, self.sealer.seal_text(form.password)), "changed"
        same = before is not None and (before.host, before.port, before.security, before.username) == (
            host, port, form.security, username)
        if same and before.sealed_password:
            return _with_password(settings, before.sealed_password), "kept"
        if before is not None and before.sealed_password:
            raise Refused("Enter the password again: the stored one is kept only while the server "
                          "(host, port, security) and user stay the same, so that it never goes to "
                          "a server it was not entered for.")
        raise Refused(f"Give the password of {username} (or leave the user name empty to send "
                      "without signing in).")

    # -- sending -------------------------------------------------------------------
    def send_test(self, actor, to: str) -> str:
        """Send a test message to ``to`` with the saved settings; MailFailed with the server's reason."""
        to = (to or "").strip()
        if not EMAIL.match(to):
            raise Refused(f"{to!r} is not an email address.")
        settings = self._required()
        body = (f"This is a test message from CloudMover ({public_url(self.config)}), sent by "
                f"{actor.username} to check the outgoing mail settings: server {settings.server()} "
                f"(security: {settings.security}), user {settings.username or '(none)'}.\n\n"
                "If you can read this, job notifications will reach their recipients.\n")
        undelivered = self.deliver([Outgoing(to=to, subject="CloudMover test message", body=body)], settings)
        if undelivered:
            raise MailFailed(f"Sending mail through {settings.server()} failed: {undelivered[0][1]}")
        audit.record(actor.username, "mail_test_sent", to)
        return to

    def deliver(self, messages: list[Outgoing],
                settings: MailSettings | None = None) -> list[tuple[Outgoing, str]]:
        """Send ``messages`` over one connection; those not sent, each with the reason.

        Raises MailFailed (nothing sent) when the server cannot be reached or refuses the
        sign-in; a message the server refuses is reported and the others still go."""
        settings = settings or self._required()
        try:
            password = self.sealer.unseal_text(settings.sealed_password)
        except PermanentError as exc:
            raise MailFailed(f"The stored SMTP password cannot be used: {exc}") from None
        undelivered: list[tuple[Outgoing, str]] = []
        with self._session(settings, password) as client:
            for index, message in enumerate(messages):
                try:
                    client.send_message(_compose(settings, message))
                except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
                    undelivered.append((message, self._reason(exc, password)))
                except (smtplib.SMTPException, OSError) as exc:   # the connection is gone: the rest fail too
                    reason = self._reason(exc, password)
                    undelivered.extend((rest, reason) for rest in messages[index:])
                    break
        return undelivered

    def _required(self) -> MailSettings:
        settings = self.settings()
        if settings is None:
            raise Refused("Outgoing mail is not configured: save the mail server settings first "
                          "(System settings → Notifications).")
        return settings

    @contextlib.contextmanager
    def _session(self, settings: MailSettings, password: str | None):
        try:
            client = self._connect(settings, password)
        except (smtplib.SMTPException, OSError) as exc:   # ssl.SSLError is an OSError
            raise MailFailed(f"Sending mail through {settings.server()} failed: "
                             f"{self._reason(exc, password)}") from None
        try:
            yield client
        finally:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()

    def _connect(self, settings: MailSettings, password: str | None) -> smtplib.SMTP:
        if settings.security == "tls":
            client = smtplib.SMTP_SSL(settings.host, settings.port, timeout=self.timeout,
                                      context=self._tls_context())
        else:
            client = smtplib.SMTP(settings.host, settings.port, timeout=self.timeout)
        try:
            client.ehlo()
            if settings.security == "starttls":
                client.starttls(context=self._tls_context())
                client.ehlo()
            if settings.username:
                client.login(settings.username, password or "")
        except BaseException:
            client.close()
            raise
        return client

    def _reason(self, exc: BaseException, password: str | None) -> str:
        reason = _reason(exc, self.timeout)
        return reason.replace(password, "…") if password else reason


def _with_password(settings: MailSettings, sealed: str | None) -> MailSettings:
    return MailSettings(host=settings.host, port=settings.port, security=settings.security,
                        username=settings.username, sender=settings.sender, sealed_password=sealed)


def _compose(settings: MailSettings, message: Outgoing) -> EmailMessage:
    email = EmailMessage()
    email["From"] = formataddr(("CloudMover", settings.sender))
    email["To"] = message.to
    email["Subject"] = one_line(message.subject)
    email["Date"] = formatdate(usegmt=True)
    email["Message-ID"] = make_msgid(domain=settings.sender.rpartition("@")[2])
    email["Auto-Submitted"] = "auto-generated"   # RFC 3834: no vacation replies to the robot
    email.set_content(message.body)
    return email


def _said(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
    return f"{exc.smtp_code} {one_line(text)}"


def _reason(exc: BaseException, timeout: float) -> str:
    """What went wrong, in words an admin can act on, with the server's own answer."""
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return f"authentication failed: the server refused the user name or password ({_said(exc)})"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "the server refused the recipient: " + "; ".join(
            f"{code} {one_line(text.decode(errors='replace') if isinstance(text, bytes) else str(text))}"
            for code, text in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return f"the server refused the sender address ({_said(exc)})"
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return f"the server does not offer what these settings need: {exc}"
    if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):   # smtplib wraps read timeouts
        return (f"no answer within {timeout:g} seconds (check the host, the port and the security setting, "
                "and that a firewall lets the head node reach the server)")
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return (f"the server closed the connection ({exc or 'without a word'}); check the port and the "
                "security setting")
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"the server answered {_said(exc)}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"its TLS certificate was not accepted: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"the TLS handshake failed ({exc.reason or exc}); check the port and the security setting"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: nothing accepts connections there (check the host and the port)"
    if isinstance(exc, socket.gaierror):
        return f"the host name cannot be resolved ({exc.strerror})"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


def one_line(text: str, limit: int = 500) -> str:
    """``text`` on one line (no header injection, no runaway reasons), at most ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def public_url(config: dict) -> str:
    """Where users reach the UI: PUBLIC_URL, else this node's scheme, host and port."""
    if config.get("PUBLIC_URL"):
        return config["PUBLIC_URL"].rstrip("/")
    host = config["HOST"]
    if host in ("", "0.0.0.0", "::"):
        host = socket.getfqdn()
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if config['TLS'] else 'http'}://{host}:{config['PORT']}"
