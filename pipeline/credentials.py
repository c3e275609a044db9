"""Store credentials, and sealing them for the wire.

Task messages name the store to use; when a store needs an access key pair
(optionally with an STS session token) the credentials travel *sealed*: encrypted
and authenticated with a key derived from the deployment's secret, so a queue,
a log line or a dead-letter dump never shows them in clear.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass

from pipeline.errors import PermanentError


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def __repr__(self) -> str:  # never print a secret by accident
        return f"Credentials(access_key_id={self.access_key_id[:4]}…)"


def from_environment(environ=os.environ) -> Credentials | None:
    """The key pair in ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (and session token), if set.

    The first source of botocore's default chain, read the way its ``EnvProvider`` reads it, so
    the lean S3 path can sign without loading boto3 (~0.4 s of CPU per process). Credentials that
    expire (``AWS_CREDENTIAL_EXPIRATION``) are left to botocore, which refreshes them.
    """
    access_key, secret = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
    if not access_key or not secret or environ.get("AWS_CREDENTIAL_EXPIRATION"):
        return None
    token = environ.get("AWS_SECURITY_TOKEN") or environ.get("AWS_SESSION_TOKEN") or None
    return Credentials(access_key, secret, token)


def sealing_key(secret: str) -> str:
    """The key that seals credentials, derived one way from the deployment's secret: workers hold
    this, so a worker can open the credentials of its tasks but not sign the head node's sessions."""
    if not secret:
        raise ValueError("a secret key is required to seal credentials")
    return base64.urlsafe_b64encode(hashlib.sha256(b"cloudmover-credentials\0" + secret.encode()).digest()).decode()


class Sealer:
    """Encrypts credentials for the wire with a key derived from ``secret``.

    The cipher (``cryptography``, about 10 ms to load) loads on the first seal or unseal:
    most processes never use it (a worker whose tasks carry no credentials, a `cp` that uses
    the environment's), and every process that starts one pays its load before work begins."""

    def __init__(self, secret: str):
        self._key = sealing_key(secret)
        self._cipher = None

    @classmethod
    def from_sealing_key(cls, key: str) -> "Sealer":
        """A sealer from ``sealing_key(secret)``: what workers get, never the secret itself."""
        try:
            valid = len(base64.urlsafe_b64decode(key.encode())) == 32   # what Fernet requires
        except (ValueError, TypeError, AttributeError):
            valid = False
        if not valid:
            raise ValueError("the sealing key is not a key made by sealing_key()")
        sealer = cls.__new__(cls)
        sealer._key, sealer._cipher = key, None
        return sealer

    @property
    def _fernet(self):
        if self._cipher is None:
            from cryptography.fernet import Fernet

            self._cipher = Fernet(self._key)
        return self._cipher

    def seal(self, credentials: Credentials | None) -> str | None:
        if credentials is None:
            return None
        plain = json.dumps([credentials.access_key_id, credentials.secret_access_key,
                            credentials.session_token]).encode()
        return self._fernet.encrypt(plain).decode()

    def unseal(self, token: str | None) -> Credentials | None:
        if token is None:
            return None
        try:
            key_id, secret, session = json.loads(self._fernet.decrypt(token.encode()))
        except (_invalid_token(), ValueError) as exc:
            raise PermanentError("credentials in the task cannot be opened: the worker's "
                                 "secret key differs from the head node's") from exc
        return Credentials(key_id, secret, session)

    def seal_text(self, text: str | None) -> str | None:
        """A plain secret string (an SMTP password…) sealed for storage; None stays None."""
        return None if text is None else self._fernet.encrypt(text.encode()).decode()

    def unseal_text(self, token: str | None) -> str | None:
        if token is None:
            return None
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except (_invalid_token(), ValueError) as exc:
            raise PermanentError("a stored secret cannot be opened: the node's secret key changed "
                                 "since it was saved; enter it again") from exc


def _invalid_token() -> type[Exception]:
    from cryptography.fernet import InvalidToken   # loaded by then: the cipher raised it

    return InvalidToken
