"""One kept-alive HTTP/1.1 client connection, small enough to be cheap per request.

``http.client`` spends most of its time on a small request in its header
handling: a regex check per header sent, and the ``email`` package's parser for
the headers received. An S3 copy is one such request per object, so that cost
decides how many objects a worker copies per CPU-second. This connection sends
a request in one write and parses the answer with plain string operations. It
keeps what matters of HTTP/1.1: a body framed by Content-Length, chunked
transfer coding or the end of the connection; no body for HEAD, 1xx, 204 and
304; interim 1xx answers skipped; ``Connection: close`` honoured; header values
with line breaks refused (no header injection).
"""
from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

MAX_HEAD = 64 * 1024          # status line and headers of one answer
MAX_CHUNK_LINE = 4 * 1024
READ_SIZE = 64 * 1024
SEND_WHOLE = 64 * 1024        # a body up to this size goes in the same write as the headers


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.x as it should be."""


class ClosedBeforeAnswer(ConnectionError):
    """The connection ended before any byte of an answer: a kept-alive connection the server
    had closed, where nothing was done (the caller may send the request again)."""


@dataclass(slots=True)
class Answer:
    status: int
    reason: str
    headers: dict[str, str]     # names lower-cased, repeated ones joined with ", "
    body: bytes
    will_close: bool


class Connection:
    def __init__(self, host: str, port: int, *, timeout: float, tls: ssl.SSLContext | None = None):
        self.host, self.port, self.timeout, self.tls = host, port, timeout, tls
        self.sock: socket.socket | None = None
        self._buffer = bytearray()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self._buffer.clear()

    def _connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        self.sock = sock

    def exchange(self, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> Answer:
        """Send one request and read its whole answer. A header that cannot be sent as it is
        (a line break, a character beyond Latin-1) raises ValueError before anything is sent."""
        lines = [f"{method} {target} HTTP/1.1", "Accept-Encoding: identity"]
        for name, value in headers.items():
            value = str(value)
            if "\n" in value or "\r" in value or "\n" in name or "\r" in name or ":" in name:
                raise ValueError(f"header {name!r} holds a line break or its name a colon")
            lines.append(f"{name}: {value}")
        if body or method in ("PUT", "POST"):
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if self.sock is None:
            self._connect()
        if len(body) <= SEND_WHOLE:
            self.sock.sendall(head + body)
        else:
            self.sock.sendall(head)
            self.sock.sendall(body)
        return self._answer(method)

    # -- reading ----------------------------------------------------------------------
    def _fill(self) -> bool:
        """Read more into the buffer; False at the end of the stream."""
        data = self.sock.recv(READ_SIZE)
        if not data:
            return False
        self._buffer += data
        return True

    def _up_to(self, marker: bytes, limit: int, what: str, *, first: bool = False) -> bytes:
        """The bytes before the next ``marker`` (consumed with it), in at most ``limit`` bytes.
        ``first``: nothing of the answer was read yet (an empty end is ClosedBeforeAnswer)."""
        while True:
            end = self._buffer.find(marker)
            if end >= 0:
                found = bytes(self._buffer[:end])
                del self._buffer[:end + len(marker)]
                return found
            if len(self._buffer) > limit:
                raise ProtocolError(f"no end of {what} in {limit} bytes")
            if not self._fill():
                if first and not self._buffer:
                    raise ClosedBeforeAnswer("the server closed the connection without answering")
                raise ProtocolError(f"the connection ended inside {what}")

    def _answer(self, method: str) -> Answer:
        first = True
        while True:
            head = self._up_to(b"\r\n\r\n", MAX_HEAD, "the answer's headers", first=first)
            first = False
            status_line, _, rest = head.decode("latin-1").partition("\r\n")
            version, _, tail = status_line.partition(" ")
            code, _, reason = tail.partition(" ")
            if not version.startswith("HTTP/1.") or not code.isdigit() or len(code) != 3:
                raise ProtocolError(f"not an HTTP/1.x status line: {status_line[:100]!r}")
            status = int(code)
            if 100 <= status < 200 and status != 101:
                continue   # an interim answer (100 Continue): the real one follows
            break
        headers: dict[str, str] = {}
        for line in rest.split("\r\n") if rest else ():
            name, colon, value = line.partition(":")
            if not colon:
                raise ProtocolError(f"malformed header line: {line[:100]!r}")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        tokens = {t.strip() for t in headers.get("connection", "").lower().split(",")}
        will_close = "close" in tokens or (version == "HTTP/1.0" and "keep-alive" not in tokens)
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._chunked()
        elif "content-length" in headers:
            length = headers["content-length"].split(",")[0].strip()
            if not length.isdigit():
                raise ProtocolError(f"bad Content-Length {headers['content-length']!r}")
            body = self._exactly(int(length))
        else:
            body, will_close = self._until_close(), True
        return Answer(status, reason, headers, body, will_close)

    def _exactly(self, count: int) -> bytes:
        while len(self._buffer) < count:
            if not self._fill():
                raise ProtocolError(f"the connection ended {count - len(self._buffer)} bytes short of the body")
        body = bytes(self._buffer[:count])
        del self._buffer[:count]
        return body

    def _chunk_line(self) -> bytes:
        return self._up_to(b"\r\n", MAX_CHUNK_LINE, "a chunk line")

    def _chunked(self) -> bytes:
        parts = []
        while True:
            size_text = self._chunk_line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {size_text[:20]!r}") from None
            if size == 0:
                while self._chunk_line():   # trailers, up to the empty line
                    pass
                return b"".join(parts)
            parts.append(self._exactly(size))
            if self._exactly(2) != b"\r\n":
                raise ProtocolError("a chunk does not end with CRLF")

    def _until_close(self) -> bytes:
        while self._fill():
            pass
        body = bytes(self._buffer)
        self._buffer.clear()
        return body
