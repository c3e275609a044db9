"""AWS Signature Version 4 for S3 requests (header signing), stdlib only.

Signs the headers it is given plus host, x-amz-date, x-amz-content-sha256 and,
with a session token, x-amz-security-token. The path must already be encoded
the S3 way (each segment once, ``/`` kept, nothing normalised); the query is
encoded here. Produces the same Authorization header as botocore's signer.
The signing key is derived once per (secret, day) and cached.
"""
from __future__ import annotations

import hashlib
import hmac
import time
from typing import Callable
from urllib.parse import quote

from pipeline.credentials import Credentials

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def encode_query(query: dict[str, str] | None) -> str:
    """A query string encoded as SigV4 canonicalises it."""
    return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted((query or {}).items()))


class SigV4:
    """Signs with the credentials ``credentials()`` returns, read per request so
    refreshed role credentials are picked up."""

    def __init__(self, credentials: Callable[[], Credentials], region: str, service: str = "s3"):
        self._credentials, self.region, self.service = credentials, region, service
        self._keys: dict[tuple[str, str], bytes] = {}

    def _signing_key(self, secret: str, day: str) -> bytes:
        key = self._keys.get((secret, day))
        if key is None:
            key = hmac.new(("AWS4" + secret).encode(), day.encode(), hashlib.sha256).digest()
            for part in (self.region, self.service, "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            if len(self._keys) > 8:   # rotated secrets, new days: keep the cache small
                self._keys.clear()
            self._keys[(secret, day)] = key
        return key

    def sign(self, method: str, host: str, path: str, headers: dict[str, str], *,
             query: dict[str, str] | None = None, payload_sha256: str = EMPTY_SHA256,
             now: float | None = None) -> dict[str, str]:
        """The headers to send: ``headers`` plus host, the x-amz-* ones and Authorization."""
        creds = self._credentials()
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        day = amz_date[:8]
        out = {k.lower(): str(v).strip() for k, v in headers.items()}
        out.update({"host": host, "x-amz-date": amz_date, "x-amz-content-sha256": payload_sha256})
        if creds.session_token:
            out["x-amz-security-token"] = creds.session_token
        names = sorted(out)
        signed = ";".join(names)
        canonical_headers = "".join(f"{n}:{' '.join(out[n].split())}\n" for n in names)
        request = "\n".join((method, path, encode_query(query), canonical_headers, signed, payload_sha256))
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        to_sign = "\n".join(("AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(request.encode()).hexdigest()))
        signature = hmac.new(self._signing_key(creds.secret_access_key, day), to_sign.encode(),
                             hashlib.sha256).hexdigest()
        out["authorization"] = (f"AWS4-HMAC-SHA256 Credential={creds.access_key_id}/{scope}, "
                                f"SignedHeaders={signed}, Signature={signature}")
        return out
