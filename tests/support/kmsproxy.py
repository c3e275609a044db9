"""A proxy in front of moto's S3 server that gives the objects of some buckets the ETags AWS
gives objects encrypted with SSE-KMS: 32 hex digits that are no MD5 of the content.

moto encrypts a bucket's objects by its default encryption and says so (the
``x-amz-server-side-encryption: aws:kms`` header), but keeps MD5 ETags.  Here,
every plain ETag an answer about such a bucket carries (header, listing, copy
result) becomes another, different for each bucket, and ETags sent back
(``If-Match``, ``x-amz-copy-source-if-match``) are turned into moto's again.
Multipart requests pass unchanged (part ETags go back in CompleteMultipartUpload).
moto checks no signatures, so rewritten requests still pass.
"""
from __future__ import annotations

import hashlib
import http.client
import re
import threading
import urllib.parse

from support.faultproxy import _HOP_BY_HOP, FaultProxy, _Handler

_PLAIN = re.compile(rb"(?:&quot;|&#34;|\")?([0-9a-f]{32})(?:&quot;|&#34;|\")?")
_IN_ETAG = re.compile(rb"<ETag>([^<]*)</ETag>")
_SENT_BACK = ("if-match", "x-amz-copy-source-if-match")


class KmsEtagProxy(FaultProxy):
    def __init__(self, upstream_url: str, *, kms_buckets: set[str]):
        super().__init__(upstream_url)
        self.kms_buckets = set(kms_buckets)
        self._originals: dict[str, str] = {}
        self._lock_map = threading.Lock()

    def fake(self, bucket: str, etag: str) -> str:
        made = hashlib.md5(f"kms:{bucket}:{etag}".encode()).hexdigest()
        with self._lock_map:
            self._originals[made] = etag
        return made

    def original(self, etag: str) -> str:
        with self._lock_map:
            return self._originals.get(etag, etag)



class _KmsHandler(_Handler):
    def _outgoing(self, name: str, value: str) -> str:
        if name.lower() in _SENT_BACK:
            return f'"{self.server.proxy.original(value.strip(chr(34)))}"'
        return value

    def _relay(self, response: http.client.HTTPResponse) -> None:
        proxy: KmsEtagProxy = self.server.proxy
        target = urllib.parse.urlsplit(self.path)
        bucket = urllib.parse.unquote(target.path.lstrip("/").split("/", 1)[0])
        body = response.read()
        dropped = {"transfer-encoding"} | ({"content-length"} if self.command != "HEAD" else set())
        headers = [(n, v) for n, v in response.getheaders() if n.lower() not in _HOP_BY_HOP | dropped]
        if bucket in proxy.kms_buckets and "uploadId" not in target.query:
            headers = [(n, f'"{proxy.fake(bucket, v.strip(chr(34)))}"'
                        if n.lower() == "etag" and re.fullmatch(r'"?[0-9a-f]{32}"?', v) else v) for n, v in headers]
            if ("xml" in (response.getheader("Content-Type") or "") and self.command != "GET"
                    or "list-type" in target.query):    # a copy's result, a listing
                body = _IN_ETAG.sub(lambda m: b"<ETag>" + _PLAIN.sub(
                    lambda e: b'"' + proxy.fake(bucket, e.group(1).decode()).encode() + b'"', m.group(1))
                    + b"</ETag>", body)
        self.send_response_only(response.status, response.reason)
        for name, value in headers:
            self.send_header(name, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


KmsEtagProxy.handler = _KmsHandler
