"""REST API for outgoing mail (admins) and for choosing whom a job's end is told.

The SMTP password goes in, never comes out (``has_password``). ``/recipients``
lists user names and whether each has an email address: what the New Job
dialog needs to offer a choice, for the roles that submit jobs; the addresses
themselves stay with admins (``/users``)."""
from __future__ import annotations

from flask import current_app
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from headnode import notifications
from headnode.auth import RUNNERS, allow, caller
from headnode.mail import SECURITY, MailForm

blp = Blueprint("mail", __name__, url_prefix="/api/v1", description="Outgoing mail and job notifications")


def _mail():
    return current_app.extensions["cloudmover.mail"]


class MailSettingsIn(Schema):
    host = fields.String(required=True, validate=validate.Length(min=1, max=253))
    port = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1, max=65535),
                          metadata={"description": "Default: 25 (none), 587 (starttls) or 465 (tls)"})
    security = fields.String(load_default="starttls", validate=validate.OneOf(SECURITY), metadata={
        "description": "none (plain SMTP), starttls (upgrade to TLS after connecting) or tls (TLS from the start)"})
    username = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=256),
                             metadata={"description": "Empty: send without signing in"})
    password = fields.String(load_default=None, allow_none=True, load_only=True, metadata={
        "description": "Write-only; leave empty to keep the stored one (same host, port, security and user)"})
    sender = fields.String(required=True, validate=validate.Length(max=256),
                           metadata={"description": "The address messages come from"})


class MailSettingsOut(Schema):
    configured = fields.Boolean(metadata={"description": "False until settings are saved: nobody is emailed"})
    host = fields.String()
    port = fields.Integer()
    security = fields.String()
    username = fields.String()
    sender = fields.String()
    has_password = fields.Boolean()


class MailTestIn(Schema):
    to = fields.String(required=True, validate=validate.Length(min=3, max=256))


class MailTestOut(Schema):
    sent_to = fields.String()


class RecipientOut(Schema):
    username = fields.String()
    has_email = fields.Boolean()


@blp.route("/mail-settings", methods=["GET"])
@blp.response(200, MailSettingsOut)
@allow("admin")
def get_mail_settings():
    """The outgoing mail server settings (never the password)."""
    return _mail().view()


@blp.route("/mail-settings", methods=["PUT"])
@blp.arguments(MailSettingsIn)
@blp.response(200, MailSettingsOut)
@allow("admin")
def save_mail_settings(body):
    return _mail().save(caller(), MailForm(**body))


@blp.route("/mail-settings/test", methods=["POST"])
@blp.arguments(MailTestIn)
@blp.response(200, MailTestOut)
@allow("admin")
def send_test_message(body):
    """Send a test message with the saved settings; refused (400) with the server's reason on failure."""
    return {"sent_to": _mail().send_test(caller(), body["to"])}


@blp.route("/recipients", methods=["GET"])
@blp.response(200, RecipientOut(many=True))
@allow(*RUNNERS)
def list_recipients():
    """Active users and whether each has an email address, to choose whom a job's end is told."""
    return notifications.recipients()
