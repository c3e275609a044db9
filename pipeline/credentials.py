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

from cryptography.fernet import Fernet, InvalidToken

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


class Sealer:
    """Encrypts credentials for the wire with a key derived from ``secret``."""

    def __init__(self, secret: str):
        if not secret:
            raise ValueError("a secret key is required to seal credentials")
        digest = hashlib.sha256(b"cloudmover-credentials\0" + secret.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

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
        except (InvalidToken, ValueError) as exc:
            raise PermanentError("credentials in the task cannot be opened: the worker's "
                                 "secret key differs from the head node's") from exc
        return Credentials(key_id, secret, session)
