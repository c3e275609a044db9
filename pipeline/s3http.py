"""A lean S3 request path: kept-alive HTTP/1.1 connections (``http11``) and SigV4.

botocore spends about 2 ms of CPU per request; this path about 0.2 ms (0.4 ms
on http.client: ``bench/lean-s3-findings.md``, ``bench/README.md``), which
decides small-object throughput when client and server share the CPUs. It serves the requests of
a server-side copy on path-style endpoints (``s3store`` says which); the rest
stays on boto3. Connections are pooled and kept alive; retries are the
caller's (``call_with_retries``).
"""
from __future__ import annotations

import hashlib
import re
import ssl
import threading
from dataclasses import dataclass
from typing import Callable
from urllib.parse import quote, urlsplit

from pipeline import errors, http11
from pipeline.credentials import Credentials
from pipeline.sigv4 import EMPTY_SHA256, SigV4, encode_query

MAX_IDLE = 64   # kept-alive connections per endpoint and credentials
_FIELD = {name: re.compile(rf"<{name}>(.*?)</{name}>".encode(), re.S) for name in ("Code", "Message", "ETag")}


def xml_field(body: bytes, name: str) -> str | None:
    found = _FIELD[name].search(body or b"")
    if not found:
        return None
    return found.group(1).decode("utf-8", "replace").replace("&quot;", '"').replace("&#34;", '"').replace(
        "&amp;", "&")


def object_path(bucket: str, key: str | None = None) -> str:
    return "/" + quote(bucket, safe="") + ("" if key is None else "/" + quote(key, safe="/~"))


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def etag(self) -> str | None:
        found = self.headers.get("etag") or xml_field(self.body, "ETag")
        return found.strip('"') if found else None


class S3Http:
    def __init__(self, endpoint_url: str, *, region: str, credentials: Callable[[], Credentials],
                 classify: Callable[..., errors.PipelineError], timeout: float = 120.0):
        parts = urlsplit(endpoint_url)
        self.host, self.https = parts.netloc, parts.scheme == "https"
        self._hostname, self._port = parts.hostname, parts.port or (443 if self.https else 80)
        self._signer = SigV4(credentials, region)
        self._classify, self._timeout = classify, timeout
        self._tls = ssl.create_default_context() if self.https else None
        self._idle: list[http11.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def _acquire(self) -> http11.Connection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return http11.Connection(self._hostname, self._port, timeout=self._timeout, tls=self._tls)

    def _release(self, conn: http11.Connection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Close the idle connections; connections in use close when released."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def request(self, what: str, method: str, path: str, *, headers: dict | None = None, body: bytes = b"",
                query: dict | None = None, error_in_200: bool = False) -> Response:
        """Send one request; a pipeline error (classified as boto3 failures are) when it fails."""
        digest = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        signed = self._signer.sign(method, self.host, path, headers or {}, query=query, payload_sha256=digest)
        target = path + ("?" + encode_query(query) if query else "")
        for attempt in (1, 2):
            conn = self._acquire()
            reused = conn.sock is not None
            try:
                answer = conn.exchange(method, target, signed, body)
            except (http11.ClosedBeforeAnswer, ConnectionResetError, BrokenPipeError) as exc:
                conn.close()
                if reused and attempt == 1:
                    continue   # the server closed an idle kept-alive connection: nothing was done
                raise self._transport_error(what, exc) from exc
            except (OSError, http11.ProtocolError) as exc:
                conn.close()
                raise self._transport_error(what, exc) from exc
            except ValueError as exc:   # nothing was sent: no store would take this request
                self._release(conn)
                raise errors.StoreError(f"{what}: {exc}") from exc
            break
        if answer.will_close:
            conn.close()
        self._release(conn)
        data = answer.body
        failed = answer.status >= 300 or (error_in_200 and b"<Error>" in data[:512])
        if failed:
            code = xml_field(data, "Code") or str(answer.status)
            raise self._classify(what=what, status=answer.status, code=code,
                                 message=xml_field(data, "Message") or answer.reason or f"HTTP {answer.status}")
        return Response(answer.status, answer.headers, data)

    @staticmethod
    def _transport_error(what: str, exc: Exception) -> errors.PipelineError:
        return errors.TransientStoreError(f"{what}: {type(exc).__name__}: {exc}", store_code=type(exc).__name__)
