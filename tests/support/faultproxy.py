"""A reverse proxy in front of an S3 endpoint that injects errors: ``503 SlowDown``
unless told another (``error``: status, S3 error code, message).

Requests are forwarded verbatim (method, path and query, headers including
Host, so SigV4 signatures made for the proxy's URL stay valid upstream), with
bodies streamed in both directions.  The share of requests answered with the
error is set by ``fault_rate`` (drawn from a seeded ``random.Random``) and/or
``every_nth``, optionally only for some HTTP methods and some paths; ``faults``
and ``forwarded`` count what happened.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNK = 256 * 1024
# Meaningful only between two hops.  Expect is dropped because the proxy has
# already answered it; a chunked Transfer-Encoding is relayed as it comes.
_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate",
    "proxy-authorization", "te", "trailer", "upgrade", "expect",
})
SLOWDOWN = (503, "SlowDown", "Please reduce your request rate.")
ERROR_BODY = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    "<Error><Code>{code}</Code><Message>{message}</Message>"
    "<RequestId>{request_id}</RequestId><HostId>faultproxy</HostId></Error>"
)


class FaultProxy:
    """Threaded HTTP/1.1 proxy on 127.0.0.1 and a free port.

    A request is eligible for a fault when ``methods`` is None or holds its
    method, and ``paths`` is None or holds the end of its path (percent-decoded,
    without the query), e.g. ``"/bucket/key"``.  Eligible request number n
    (from 1) gets the error when ``every_nth`` divides n, or else when the
    seeded generator draws below ``fault_rate``.  These attributes may be
    changed while the proxy runs.
    """

    handler: type  # the request handler class (``_Handler``, set below; a subclass may change it)

    def __init__(
        self,
        upstream_url: str,
        *,
        fault_rate: float = 0.0,
        every_nth: int | None = None,
        methods: Iterable[str] | None = None,
        paths: Iterable[str] | None = None,
        seed: int = 0,
        timeout: float = 60.0,
        error: tuple[int, str, str] = SLOWDOWN,
    ) -> None:
        upstream = urllib.parse.urlsplit(upstream_url)
        if upstream.scheme != "http" or upstream.path not in ("", "/"):
            raise ValueError(f"upstream must be http://host:port, not {upstream_url!r}")
        self.upstream_host = upstream.hostname
        self.upstream_port = upstream.port or 80
        self.fault_rate = fault_rate
        self.every_nth = every_nth
        self.methods = methods
        self.paths = None if paths is None else tuple(paths)
        self.timeout = timeout
        self.error = error
        self.faults = 0
        self.forwarded = 0
        self._eligible = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FaultProxy is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def _decide(self, method: str, target: str) -> bool:
        """Whether the next request with ``method`` to ``target`` (path and query) gets a
        fault (and count it)."""
        path = urllib.parse.unquote(urllib.parse.urlsplit(target).path)
        with self._lock:
            if self.methods is not None and method not in {m.upper() for m in self.methods}:
                return False
            if self.paths is not None and not path.endswith(self.paths):
                return False
            self._eligible += 1
            fault = bool(self.every_nth and self._eligible % self.every_nth == 0)
            if not fault and self.fault_rate > 0:
                fault = self._rng.random() < self.fault_rate
            self.faults += fault
            return fault

    def _count_forwarded(self) -> None:
        with self._lock:
            self.forwarded += 1

    def start(self) -> FaultProxy:
        if self._server is not None:
            raise RuntimeError("FaultProxy is already started")
        self._server = _Server(("127.0.0.1", 0), self.handler)
        self._server.proxy = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
            name="faultproxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop client connections and join every thread; idempotent."""
        if self._server is None:
            return
        self._server.shutdown()
        self._thread.join()
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        self._server.server_close()  # joins the handler threads
        self._server = self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # so that server_close() joins the handlers
    proxy: FaultProxy


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        proxy = self.server.proxy
        self.connection.settimeout(proxy.timeout)
        with proxy._lock:
            proxy._connections.add(self.connection)

    def finish(self) -> None:
        proxy = self.server.proxy
        with proxy._lock:
            proxy._connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def parse_request(self) -> bool:
        self._fault: bool | None = None
        return super().parse_request()

    def handle_expect_100(self) -> bool:
        # Decide before inviting the body, so a fault is answered as S3 does:
        # at once, the client never sending the body.
        self._fault = self.server.proxy._decide(self.command, self.path)
        return True if self._fault else super().handle_expect_100()

    def _handle(self) -> None:
        decided_early = self._fault is not None  # at Expect: 100-continue
        fault = self._fault if decided_early else self.server.proxy._decide(self.command, self.path)
        try:
            if fault:
                if not decided_early:
                    for _ in self._body():  # keep the connection in step
                        pass
                self._send_fault(close=decided_early)  # the body may yet come
            else:
                self._forward()
        except (ConnectionError, TimeoutError, ValueError):
            self.close_connection = True

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_OPTIONS = do_PATCH = _handle

    def _body(self) -> Iterator[bytes]:
        """The request body as it comes on the wire, chunked framing included."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                line = self.rfile.readline(65537)
                yield line
                size = int(line.split(b";", 1)[0], 16)
                if size == 0:
                    break
                yield from self._read_exact(size + 2)  # data and its CRLF
            while True:  # trailers, up to the empty line
                line = self.rfile.readline(65537)
                yield line
                if line in (b"\r\n", b"\n", b""):
                    return
        yield from self._read_exact(int(self.headers.get("Content-Length") or 0))

    def _read_exact(self, size: int) -> Iterator[bytes]:
        while size > 0:
            data = self.rfile.read(min(size, CHUNK))
            if not data:
                raise ConnectionError("client closed the connection mid-body")
            size -= len(data)
            yield data

    def _send_fault(self, *, close: bool) -> None:
        request_id = f"{time.monotonic_ns():016X}"
        status, code, message = self.server.proxy.error
        body = ERROR_BODY.format(code=code, message=message, request_id=request_id).encode()
        self.send_response_only(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amz-request-id", request_id)
        self.send_header("x-amz-id-2", "faultproxy")
        self.send_header("Date", formatdate(usegmt=True))
        self.send_header("Server", "AmazonS3")
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _forward(self) -> None:
        proxy = self.server.proxy
        upstream = http.client.HTTPConnection(
            proxy.upstream_host, proxy.upstream_port, timeout=proxy.timeout)
        try:
            try:
                upstream.putrequest(self.command, self.path,
                                    skip_host=True, skip_accept_encoding=True)
                for name, value in self.headers.items():
                    if name.lower() not in _HOP_BY_HOP:
                        upstream.putheader(name, self._outgoing(name, value))
                upstream.endheaders()
                for chunk in self._body():
                    upstream.send(chunk)
                response = upstream.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                self.send_error(502, f"upstream failed: {exc}")
                self.close_connection = True
                return
            proxy._count_forwarded()
            self._relay(response)
        finally:
            upstream.close()

    def _outgoing(self, name: str, value: str) -> str:
        """A request header's value as sent upstream (a subclass may change it)."""
        return value

    def _relay(self, response: http.client.HTTPResponse) -> None:
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in _HOP_BY_HOP and name.lower() != "transfer-encoding":
                self.send_header(name, value)
        has_body = not (self.command == "HEAD" or response.status in (204, 304))
        rechunk = has_body and response.chunked
        if rechunk:
            self.send_header("Transfer-Encoding", "chunked")
        elif has_body and response.getheader("Content-Length") is None:
            self.send_header("Connection", "close")  # body ends when upstream closes
            self.close_connection = True
        self.end_headers()
        if not has_body:
            return
        while data := response.read(CHUNK):
            self.wfile.write(b"%x\r\n%b\r\n" % (len(data), data) if rechunk else data)
        if rechunk:
            self.wfile.write(b"0\r\n\r\n")


FaultProxy.handler = _Handler
