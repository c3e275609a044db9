"""REST API for signing in, one's own account, users (admins) and the audit log."""
from __future__ import annotations

from flask import current_app, request
from flask_login import logout_user
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from headnode import audit, passwords
from headnode.accounts import NewUser
from headnode.auth import EVERYONE, allow, caller, public, sign_in
from headnode.models import ROLES

blp = Blueprint("accounts", __name__, url_prefix="/api/v1", description="Sign-in, users and the audit log")


def _accounts():
    return current_app.extensions["cloudmover.accounts"]


class SignIn(Schema):
    username = fields.String(required=True, validate=validate.Length(max=200))
    password = fields.String(required=True, validate=validate.Length(max=passwords.MAX_LENGTH))


class PasswordChange(Schema):
    current = fields.String(required=True)
    new = fields.String(required=True, validate=validate.Length(max=passwords.MAX_LENGTH))


class PasswordProbe(Schema):
    password = fields.String(required=True, validate=validate.Length(max=passwords.MAX_LENGTH))


class StrengthOut(Schema):
    score = fields.Integer()
    label = fields.String(metadata={"description": "weak, fair or strong"})
    warning = fields.String()
    suggestions = fields.List(fields.String())


class UserOut(Schema):
    id = fields.Integer()
    username = fields.String()
    role = fields.String(metadata={"description": "admin, wrangler or viewer (View Only)"})
    email = fields.String(allow_none=True)
    active = fields.Boolean(metadata={"description": "false: suspended"})
    must_change_password = fields.Boolean()
    admin_assigned = fields.Boolean(metadata={"description": "the user never chose their own password"})
    password_strength = fields.Function(lambda u: passwords.LABELS[u.password_strength])
    created_at = fields.DateTime()


class UserIn(Schema):
    username = fields.String(required=True)
    password = fields.String(required=True, validate=validate.Length(max=passwords.MAX_LENGTH))
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    email = fields.String(load_default=None, allow_none=True)


class UsersIn(Schema):
    users = fields.List(fields.Nested(UserIn), required=True, validate=validate.Length(min=1, max=200))


class UserChange(Schema):
    role = fields.String(validate=validate.OneOf(ROLES))
    email = fields.String(allow_none=True)


class PasswordReset(Schema):
    password = fields.String(required=True, validate=validate.Length(max=passwords.MAX_LENGTH))


class TokenOut(Schema):
    token = fields.String(metadata={"description": "shown once; send as Authorization: Bearer …"})


class AuditOut(Schema):
    at = fields.DateTime()
    actor = fields.String(allow_none=True)
    action = fields.String()
    target = fields.String(allow_none=True)
    detail = fields.String(allow_none=True)
    address = fields.String(allow_none=True)


class AuditArgs(Schema):
    limit = fields.Integer(load_default=200, validate=validate.Range(min=1, max=5000))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0))
    action = fields.String(load_default=None)
    actor = fields.String(load_default=None)


# -- session and own account ----------------------------------------------------------
@blp.route("/session", methods=["POST"])
@blp.arguments(SignIn)
@blp.response(200, UserOut)
@public
def create_session(body):
    """Sign in (browser session). Failed attempts lock the account for a while."""
    user = _accounts().authenticate(body["username"], body["password"], address=request.remote_addr)
    sign_in(user)
    return user


@blp.route("/session", methods=["DELETE"])
@blp.response(204)
@allow(*EVERYONE, before_password_change=True)
def delete_session():
    """Sign out."""
    logout_user()


@blp.route("/me", methods=["GET"])
@blp.response(200, UserOut)
@allow(*EVERYONE, before_password_change=True)
def me():
    return _me()


@blp.route("/me/password", methods=["POST"])
@blp.arguments(PasswordChange)
@blp.response(200, UserOut)
@allow(*EVERYONE, before_password_change=True)
def change_password(body):
    """Change one's own password (required at first sign-in and after a reset)."""
    user = _accounts().change_password(_me(), current=body["current"], new=body["new"])
    if caller().via == "session":
        sign_in(user)   # the change ended every session, this one included: start a fresh one
    return user


@blp.route("/me/token", methods=["POST"])
@blp.response(201, TokenOut)
@allow(*EVERYONE)
def issue_token():
    """A new API token for oneself (the previous one stops working)."""
    me_ = _me()
    return {"token": _accounts().issue_token(me_, me_.id)}


@blp.route("/password-strength", methods=["POST"])
@blp.arguments(PasswordProbe)
@blp.response(200, StrengthOut)
@allow(*EVERYONE, before_password_change=True)
def password_strength(body):
    """How strong a password would be (zxcvbn), for the meter shown while typing."""
    who = caller()
    return passwords.strength(body["password"], user_inputs=(who.username, who.email or "")).to_dict()


# -- users (admins) ----------------------------------------------------------------------
@blp.route("/users", methods=["GET"])
@blp.response(200, UserOut(many=True))
@allow("admin")
def list_users():
    return _accounts().list()


@blp.route("/users", methods=["POST"])
@blp.arguments(UsersIn)
@blp.response(201, UserOut(many=True))
@allow("admin")
def add_users(body):
    """Add several users at once: all of them, or none if any row is refused."""
    rows = [NewUser(u["username"].strip(), u["password"], u["role"], (u.get("email") or "").strip() or None)
            for u in body["users"]]
    return _accounts().add_many(caller(), rows)


@blp.route("/users/<int:user_id>", methods=["PATCH"])
@blp.arguments(UserChange)
@blp.response(200, UserOut)
@allow("admin")
def change_user(body, user_id):
    return _accounts().update(caller(), user_id, role=body.get("role"), email=body.get("email"))


@blp.route("/users/<int:user_id>/password", methods=["POST"])
@blp.arguments(PasswordReset)
@blp.response(200, UserOut)
@allow("admin")
def reset_password(body, user_id):
    """Set a new password the user must change at their next sign-in."""
    return _accounts().reset_password(caller(), user_id, body["password"])


@blp.route("/users/<int:user_id>/suspend", methods=["POST"])
@blp.response(200, UserOut)
@allow("admin")
def suspend_user(user_id):
    return _accounts().set_active(caller(), user_id, False)


@blp.route("/users/<int:user_id>/enable", methods=["POST"])
@blp.response(200, UserOut)
@allow("admin")
def enable_user(user_id):
    return _accounts().set_active(caller(), user_id, True)


@blp.route("/users/<int:user_id>", methods=["DELETE"])
@blp.response(204)
@allow("admin")
def delete_user(user_id):
    _accounts().delete(caller(), user_id)


@blp.route("/audit", methods=["GET"])
@blp.arguments(AuditArgs, location="query")
@blp.response(200, AuditOut(many=True))
@allow("admin")
def audit_log(args):
    """Sign-ins, user and folder changes and job actions, newest first."""
    return audit.recent(**args)


def _me():
    """The caller's own user row."""
    from headnode.accesserrors import Refused
    from headnode.models import User
    who = caller()
    if who.id is None:
        raise Refused("The node's operator token belongs to no user; sign in as a user for this.")
    return User.get_by_id(who.id)
