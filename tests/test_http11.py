"""The lean HTTP/1.1 connection against a scripted server on a real socket: every way an answer
can be framed, a kept-alive connection the server closed, and answers that are not HTTP."""
from __future__ import annotations

import socket
import ssl
import threading

import pytest

from pipeline import errors, http11
from pipeline.credentials import Credentials
from pipeline.s3store import classify
from pipeline.s3http import S3Http
from headnode.server import ensure_certificate


class ScriptedServer:
    """Answers each request it reads with the next scripted bytes; ``close`` after an answer
    ends that connection. Records every request head and body it read, and on which connection."""

    def __init__(self, script: list[tuple[bytes, bool]], tls: ssl.SSLContext | None = None):
        self.script, self.tls = list(script), tls
        self.requests: list[tuple[int, bytes, bytes]] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        connection_number = 0
        while self.script:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            connection_number += 1
            if self.tls is not None:
                try:
                    sock = self.tls.wrap_socket(sock, server_side=True)
                except ssl.SSLError:   # the client refused the certificate
                    sock.close()
                    continue
            with sock:
                buffer = b""
                while self.script:
                    while b"\r\n\r\n" not in buffer:
                        data = sock.recv(65536)
                        if not data:
                            break
                        buffer += data
                    if b"\r\n\r\n" not in buffer:
                        break
                    head, _, buffer = buffer.partition(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    while len(buffer) < length:
                        buffer += sock.recv(65536)
                    body, buffer = buffer[:length], buffer[length:]
                    self.requests.append((connection_number, head, body))
                    answer, close = self.script.pop(0)
                    sock.sendall(answer)
                    if close:
                        break

    def close(self) -> None:
        self.listener.close()
        self._thread.join(5)


OPENED: list = []   # connections and clients a test opened, closed after it


@pytest.fixture
def scripted():
    servers = []

    def start(*script, tls=None):
        server = ScriptedServer(list(script), tls)
        servers.append(server)
        return server
    yield start
    while OPENED:
        OPENED.pop().close()
    for server in servers:
        server.close()


def connect(server) -> http11.Connection:
    OPENED.append(http11.Connection("127.0.0.1", server.port, timeout=10))
    return OPENED[-1]


def test_content_length_answers_keep_the_connection_for_the_next_request(scripted):
    server = scripted((b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"abc\"\r\n\r\nhello", False),
                      (b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n", False))
    conn = connect(server)
    first = conn.exchange("PUT", "/b/k", {"x-amz-meta-a": "1"}, b"body!")
    second = conn.exchange("GET", "/b/k?x=1", {})
    assert (first.status, first.body, first.headers["etag"], first.will_close) == (200, b"hello", '"abc"', False)
    assert (second.status, second.reason, second.body) == (201, "Created", b"")
    assert [number for number, _, _ in server.requests] == [1, 1]
    put_head, put_body = server.requests[0][1], server.requests[0][2]
    assert put_head.startswith(b"PUT /b/k HTTP/1.1\r\n")
    assert b"\r\nx-amz-meta-a: 1" in put_head and b"\r\nContent-Length: 5" in put_head
    assert put_body == b"body!"
    assert b"Content-Length" not in server.requests[1][1]   # a GET without a body says nothing of one


def test_tls_connections_verify_the_server_and_carry_the_same_exchange(scripted, tmp_path):
    cert, key = ensure_certificate(str(tmp_path), "127.0.0.1")
    serving = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    serving.load_cert_chain(cert, key)
    server = scripted((b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
                      (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nyes", False), tls=serving)
    untrusting = http11.Connection("127.0.0.1", server.port, timeout=10, tls=ssl.create_default_context())
    with pytest.raises(ssl.SSLCertVerificationError):
        untrusting.exchange("GET", "/", {})
    untrusting.close()
    trusting = ssl.create_default_context(cafile=cert)
    OPENED.append(http11.Connection("127.0.0.1", server.port, timeout=10, tls=trusting))
    assert [OPENED[-1].exchange("GET", "/", {}).body for _ in range(2)] == [b"ok", b"yes"]
    assert len(server.requests) == 2


def test_a_chunked_answer_is_joined_and_its_trailers_skipped(scripted):
    server = scripted((b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"4;ext=1\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-Trailer: t\r\n\r\n"
                       b"HTTP/1.1 204 No Content\r\n\r\n", False),
                      (b"", False))
    conn = connect(server)
    assert conn.exchange("GET", "/", {}).body == b"Wikipedia in \r\n\r\nchunks."
    # the 204 that followed in the same write is the next request's answer: nothing was lost or mixed
    assert conn.exchange("GET", "/", {}).status == 204


def test_an_answer_without_length_ends_with_the_connection(scripted):
    server = scripted((b"HTTP/1.0 200 OK\r\n\r\nall of it", True))
    answer = connect(server).exchange("GET", "/", {})
    assert (answer.body, answer.will_close) == (b"all of it", True)


def test_head_204_and_interim_answers_carry_no_body(scripted):
    server = scripted((b"HTTP/1.1 200 OK\r\nContent-Length: 12345\r\n\r\n", False),
                      (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
                      (b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", True))
    conn = connect(server)
    head = conn.exchange("HEAD", "/b/k", {})
    assert (head.status, head.headers["content-length"], head.body) == (200, "12345", b"")
    assert conn.exchange("POST", "/b/k?uploads", {}).body == b"ok"
    last = conn.exchange("DELETE", "/b/k", {})
    assert (last.status, last.body, last.will_close) == (204, b"", True)


def test_repeated_headers_are_joined_as_http_says(scripted):
    server = scripted((b"HTTP/1.1 200 OK\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 0\r\n\r\n", False))
    assert connect(server).exchange("GET", "/", {}).headers["x-a"] == "1, 2"


@pytest.mark.parametrize("headers", [{"x-amz-meta-a": "ok\r\nInjected: yes"}, {"x-amz-meta-a": "a\nb"},
                                     {"bad\r\nname": "v"}, {"a:b": "v"}])
def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(scripted, headers):
    server = scripted((b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", False))
    conn = connect(server)
    with pytest.raises(ValueError, match="line break"):
        conn.exchange("PUT", "/b/k", headers, b"x")
    conn.exchange("GET", "/", {})   # the connection is still usable, and saw only this request
    assert len(server.requests) == 1 and server.requests[0][1].startswith(b"GET / ")


@pytest.mark.parametrize("answer, message", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "bytes short of the body"),
    (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x status line"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header line"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5", "inside a chunk line"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"5" * 5000, "no end of a chunk line in 4096"),
    (b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70000, "no end of the answer's headers in 65536 bytes"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc", "2 bytes short of the body"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Le", "inside the answer's headers"),
])
def test_an_answer_that_is_not_http_is_a_protocol_error(scripted, answer, message):
    server = scripted((answer, True))
    with pytest.raises(http11.ProtocolError, match=message):
        connect(server).exchange("GET", "/", {})


def lean(server) -> S3Http:
    creds = Credentials("key", "secret")
    OPENED.append(S3Http(f"http://127.0.0.1:{server.port}", region="us-east-1", credentials=lambda: creds,
                         classify=classify, timeout=10))
    return OPENED[-1]


def test_a_kept_alive_connection_the_server_closed_is_opened_again_once(scripted):
    # the server answers, then drops the connection; the next request finds it closed, before any
    # answer: it goes again on a new connection
    server = scripted((b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", True),
                      (b"HTTP/1.1 200 OK\r\nETag: \"e\"\r\nContent-Length: 0\r\n\r\n", False))
    client = lean(server)
    client.request("open", "HEAD", "/b")
    assert client.request("copy", "PUT", "/b/k", headers={"x-amz-copy-source": "b/src"}).etag == "e"
    assert [number for number, _, _ in server.requests] == [1, 2]
    assert b"\r\nauthorization: AWS4-HMAC-SHA256 Credential=key/" in server.requests[1][1]


def test_a_broken_answer_is_a_transient_error_that_names_the_request(scripted):
    server = scripted((b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\ncut", True))
    with pytest.raises(errors.TransientStoreError, match="copy s3://b/k: ProtocolError: the connection "
                                                          "ended 97 bytes short of the body"):
        lean(server).request("copy s3://b/k", "PUT", "/b/k")


def test_an_error_answer_is_classified_with_the_store_message(scripted):
    error = b"<Error><Code>SlowDown</Code><Message>Please reduce</Message></Error>"
    server = scripted((b"HTTP/1.1 503 Slow Down\r\nContent-Length: %d\r\n\r\n%s" % (len(error), error), False),
                      (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", False))
    client = lean(server)
    with pytest.raises(errors.TransientStoreError, match="Please reduce"):
        client.request("copy", "PUT", "/b/k")
    with pytest.raises(errors.AccessDenied, match="Forbidden"):
        client.request("copy", "PUT", "/b/k")


def test_a_header_no_store_could_take_fails_its_request_for_good(scripted):
    server = scripted((b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", False))
    client = lean(server)
    with pytest.raises(errors.StoreError, match="copy s3://b/k: header 'x-amz-meta-a' holds a line break"):
        client.request("copy s3://b/k", "PUT", "/b/k", headers={"x-amz-meta-a": "1\r\n2"})
    with pytest.raises(errors.StoreError, match="latin-1"):
        client.request("copy s3://b/k", "PUT", "/b/k", headers={"x-amz-meta-a": "\u4e2d"})
    client.request("open", "HEAD", "/b")   # the connection went back to the pool unused
    assert len(server.requests) == 1
