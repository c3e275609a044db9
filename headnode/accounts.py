"""Users, roles and sign-in: the rules every page and API call goes through.

Roles: ``admin`` (everything), ``wrangler`` (run and watch jobs), ``viewer``
(watch). There is always at least one active admin: the last one cannot be
demoted, suspended or deleted. A password set by an admin (the initial one, a
new user's, a reset) must be changed at the next sign-in. Failed sign-ins lock
the account for a while, doubling with each further failure.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from headnode import audit, instancemetadata, passwords
from headnode.accesserrors import Locked, Refused, SignInFailed
from headnode.mail import EMAIL
from headnode.models import ROLES, User, db, now

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
FREE_FAILURES = 5                 # failed sign-ins before the account locks
LOCK_SECONDS = 30                 # first lock; doubles with each further failure
MAX_LOCK_SECONDS = 15 * 60
INITIAL_ADMIN = "admin"
INITIAL_PASSWORD_FILE = "initial-admin-password"


@dataclass(frozen=True)
class NewUser:
    username: str
    password: str
    role: str
    email: str | None = None


def instance_id(metadata_url: str, timeout: float = 1.0) -> str | None:
    """This machine's EC2 instance id (IMDSv2), or None off EC2."""
    if not metadata_url:
        return None
    try:
        found = instancemetadata.read(metadata_url, "instance-id", timeout=timeout)
    except OSError:
        return None
    return found if re.fullmatch(r"i-[0-9a-f]{8,17}", found) else None


class AccountService:
    def __init__(self, config: dict):
        self.config = config

    # -- first start ----------------------------------------------------------------
    def ensure_initial_admin(self) -> str | None:
        """Create the first admin if there is no user yet; the initial password, or None.

        The password is the EC2 instance id on EC2, else random; either way it is written to
        DATA_DIR/initial-admin-password (mode 0600) and must be changed at first sign-in.
        """
        with db.atomic("IMMEDIATE"):
            if User.select().exists():
                return None
            password = instance_id(self.config["INSTANCE_METADATA_URL"]) or secrets.token_urlsafe(12)
            User.create(username=INITIAL_ADMIN, password_hash=passwords.hash_password(password), role="admin",
                        must_change_password=True, admin_assigned=True)
        path = Path(self.config["DATA_DIR"]) / INITIAL_PASSWORD_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
        audit.record(None, "user_added", INITIAL_ADMIN, "initial admin created at first start")
        return password

    # -- signing in ---------------------------------------------------------------------
    def authenticate(self, username: str, password: str, *, address: str | None = None) -> User:
        user = User.get_or_none(User.username == (username or "").strip())
        moment = now()
        if user is not None and user.locked_until and user.locked_until > moment:
            wait = int((user.locked_until - moment).total_seconds()) + 1
            audit.record(user.username, "signin_refused", detail="account locked", address=address)
            raise Locked(f"Too many failed sign-ins. Try again in {wait} seconds.", wait)
        valid = passwords.verify(user.password_hash if user else None, password or "")
        if not valid or user is None:
            if user is not None:
                self._count_failure(user, moment)
            audit.record(username[:64] if username else None, "signin_failed", address=address)
            raise SignInFailed("Wrong user name or password.")
        if not user.active:
            audit.record(user.username, "signin_refused", detail="account suspended", address=address)
            raise SignInFailed("This account is suspended. Ask an admin to re-enable it.")
        User.update(failed_signins=0, locked_until=None).where(User.id == user.id).execute()
        audit.record(user.username, "signin", address=address)
        return User.get_by_id(user.id)

    @staticmethod
    def _count_failure(user: User, moment: dt.datetime) -> None:
        failures = user.failed_signins + 1
        locked = None
        if failures >= FREE_FAILURES:
            seconds = min(MAX_LOCK_SECONDS, LOCK_SECONDS * 2 ** (failures - FREE_FAILURES))
            locked = moment + dt.timedelta(seconds=seconds)
        User.update(failed_signins=failures, locked_until=locked).where(User.id == user.id).execute()

    def by_session(self, session_id: str) -> User | None:
        """The user of a session id ``"<id>:<epoch>"``; None once the user changed password or was suspended."""
        user_id, _, epoch = (session_id or "").partition(":")
        if not user_id.isdigit() or not epoch.isdigit():
            return None
        user = User.get_or_none(User.id == int(user_id))
        if user is None or not user.active or user.session_epoch != int(epoch):
            return None
        return user

    # -- API tokens ----------------------------------------------------------------------
    def issue_token(self, actor: User, user_id: int) -> str:
        """A new API token for the user (shown once; only its hash is kept). Replaces the old one."""
        user = self._get(user_id)
        if actor.id != user.id and actor.role != "admin":
            raise Refused("You may only create an API token for yourself.")
        token = "cm_" + secrets.token_urlsafe(32)
        user.api_token_hash = _token_hash(token)
        user.save()
        audit.record(actor.username, "api_token_issued", user.username)
        return token

    def by_token(self, token: str) -> User | None:
        if not token.startswith("cm_"):
            return None
        user = User.get_or_none(User.api_token_hash == _token_hash(token))
        return user if user is not None and user.active else None

    # -- own password ----------------------------------------------------------------------
    def change_password(self, user: User, *, current: str, new: str) -> User:
        if not passwords.verify(user.password_hash, current or ""):
            raise Refused("The current password is wrong.")
        if new == current:
            raise Refused("Choose a password different from the current one.")
        reason = passwords.problem(new, user_inputs=(user.username, user.email or ""))
        if reason:
            raise Refused(reason)
        score = passwords.strength(new, user_inputs=(user.username, user.email or "")).score
        User.update(password_hash=passwords.hash_password(new), must_change_password=False, admin_assigned=False,
                    password_strength=score, session_epoch=User.session_epoch + 1).where(User.id == user.id).execute()
        audit.record(user.username, "password_changed", user.username)
        return User.get_by_id(user.id)

    # -- managing users (admins) -------------------------------------------------------------
    def list(self) -> list[User]:
        return list(User.select().order_by(User.username))

    def add_many(self, actor: User, rows: list[NewUser]) -> list[User]:
        """Add every user or none: each row is checked before any is created."""
        if not rows:
            raise Refused("Give at least one user to add.")
        seen = set()
        for row in rows:
            _check_username(row.username)
            if row.username.lower() in seen or User.select().where(
                    User.username == row.username).exists():
                raise Refused(f"A user named {row.username!r} already exists.")
            seen.add(row.username.lower())
            _check_role(row.role)
            _check_email(row.email)
            if len(row.password) < passwords.MIN_LENGTH:
                raise Refused(f"{row.username}: an initial password needs at least "
                              f"{passwords.MIN_LENGTH} characters.")
        created = []
        with db.atomic():
            for row in rows:
                score = passwords.strength(row.password, user_inputs=(row.username,)).score
                created.append(User.create(username=row.username, password_hash=passwords.hash_password(row.password),
                                           role=row.role, email=row.email or None, must_change_password=True,
                                           admin_assigned=True, password_strength=score))
        for user in created:
            audit.record(actor.username, "user_added", user.username, f"role {user.role}")
        return created

    def update(self, actor: User, user_id: int, *, role: str | None = None, email: str | None = None) -> User:
        with db.atomic("IMMEDIATE"):
            user = self._get(user_id)
            changes = []
            if role is not None and role != user.role:
                _check_role(role)
                if user.role == "admin":
                    self._keep_an_admin(user, "demote")
                changes.append(f"role {user.role} → {role}")
                user.role = role
            if email is not None and (email or None) != user.email:
                _check_email(email)
                changes.append("email changed")
                user.email = email or None
            user.save()   # a new role applies from the next request: roles are read per request
        if changes:
            audit.record(actor.username, "user_changed", user.username, "; ".join(changes))
        return user

    def reset_password(self, actor: User, user_id: int, password: str) -> User:
        if len(password) < passwords.MIN_LENGTH:
            raise Refused(f"A password needs at least {passwords.MIN_LENGTH} characters.")
        user = self._get(user_id)
        score = passwords.strength(password, user_inputs=(user.username,)).score
        User.update(password_hash=passwords.hash_password(password), must_change_password=True, admin_assigned=True,
                    password_strength=score, failed_signins=0, locked_until=None,
                    session_epoch=User.session_epoch + 1).where(User.id == user.id).execute()
        audit.record(actor.username, "password_reset", user.username)
        return User.get_by_id(user.id)

    def set_active(self, actor: User, user_id: int, active: bool) -> User:
        with db.atomic("IMMEDIATE"):
            user = self._get(user_id)
            if not active and user.role == "admin":
                self._keep_an_admin(user, "suspend")
            user.active = active
            user.session_epoch += 0 if active else 1   # suspension ends the user's sessions at once
            if active:
                user.failed_signins, user.locked_until = 0, None
            user.save()
        audit.record(actor.username, "user_enabled" if active else "user_suspended", user.username)
        return user

    def delete(self, actor: User, user_id: int) -> None:
        with db.atomic("IMMEDIATE"):
            user = self._get(user_id)
            if user.role == "admin":
                self._keep_an_admin(user, "delete")
            user.delete_instance(recursive=True)
        audit.record(actor.username, "user_deleted", user.username)

    @staticmethod
    def _keep_an_admin(user: User, verb: str) -> None:
        others = User.select().where((User.role == "admin") & User.active & (User.id != user.id)).count()
        if user.active and others == 0:
            raise Refused(f"You cannot {verb} {user.username}: it is the last active admin. "
                          "Make another user an admin first.")

    @staticmethod
    def _get(user_id: int) -> User:
        user = User.get_or_none(User.id == user_id)
        if user is None:
            from headnode.jobs import NotFound
            raise NotFound(f"no user {user_id}")
        return user


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_username(name: str) -> None:
    if not USERNAME.match(name or ""):
        raise Refused(f"{name!r} is not a valid user name: use up to 64 letters, digits, '.', '_', '@' or '-'.")


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise Refused(f"Unknown role {role!r}: choose admin, wrangler or viewer.")


def _check_email(email: str | None) -> None:
    if email and not EMAIL.match(email):
        raise Refused(f"{email!r} is not an email address.")
