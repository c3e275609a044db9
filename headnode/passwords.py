"""Passwords: salted slow hashes (argon2id) and how strong a password is.

Strength is zxcvbn's estimate (score 0–4) shown as weak (0–1), fair (2) or
strong (3–4). A user may not choose a weak password; an admin's initial or
reset password is kept only until the user's first sign-in.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 8
MAX_LENGTH = 256          # argon2 hashes anything, but a megabyte "password" is an attack
LABELS = {0: "weak", 1: "weak", 2: "fair", 3: "strong", 4: "strong"}

_hasher = PasswordHasher()   # argon2id, RFC 9106 low-memory profile, random 16-byte salt


@lru_cache(maxsize=1)
def _decoy() -> str:
    """A real hash to verify against when the user does not exist: sign-in timing stays uniform.
    Made on first use: hashing costs ~0.2 s, which no process start should pay."""
    return _hasher.hash("decoy password for unknown users")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _decoy(), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class Strength:
    score: int            # zxcvbn 0–4
    label: str            # weak | fair | strong
    warning: str
    suggestions: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"score": self.score, "label": self.label, "warning": self.warning,
                "suggestions": list(self.suggestions)}


def strength(password: str, *, user_inputs: tuple[str, ...] = ()) -> Strength:
    from zxcvbn import zxcvbn   # its dictionaries take a moment to load; only when needed
    if not password:
        return Strength(0, "weak", "Type a password.", ())
    result = zxcvbn(password[:MAX_LENGTH], user_inputs=[u for u in user_inputs if u])
    feedback = result.get("feedback") or {}
    score = int(result["score"])
    warning = feedback.get("warning") or ""
    if len(password) < MIN_LENGTH:
        score, warning = 0, f"Use at least {MIN_LENGTH} characters."
    return Strength(score, LABELS[score], warning, tuple(feedback.get("suggestions") or ()))


def problem(password: str, *, user_inputs: tuple[str, ...] = ()) -> str | None:
    """Why ``password`` may not be chosen, or None."""
    if len(password) > MAX_LENGTH:
        return f"A password may have at most {MAX_LENGTH} characters."
    if len(password) < MIN_LENGTH:
        return f"A password needs at least {MIN_LENGTH} characters."
    rated = strength(password, user_inputs=user_inputs)
    if rated.label == "weak":
        hint = rated.warning or "It is too easy to guess."
        return f"This password is weak: {hint} Add words or characters until it shows fair or strong."
    return None
