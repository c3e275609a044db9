"""A local stand-in for the EC2 instance metadata service, IMDSv2 only.

``PUT /latest/api/token`` (with the TTL header) returns a session token;
``GET /latest/meta-data/<item>`` answers the item given to the stub, only
with that token (401 otherwise, as IMDSv2 does when tokens are required) and
404 for an item it does not have. Every request is recorded.
"""
from __future__ import annotations

import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class MetadataStub:
    def __init__(self, items: dict[str, str]):
        self.items = dict(items)
        self.token = secrets.token_hex(16)
        self.requests: list[tuple[str, str, bool]] = []   # (method, path, carried the token)
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> "MetadataStub":
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self):
                stub.requests.append(("PUT", self.path, False))
                if self.path != "/latest/api/token" or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    return self._answer(400, "")
                self._answer(200, stub.token)

            def do_GET(self):
                authorised = self.headers.get("X-aws-ec2-metadata-token") == stub.token
                stub.requests.append(("GET", self.path, authorised))
                if not authorised:
                    return self._answer(401, "")
                item = self.path.removeprefix("/latest/meta-data/")
                if not self.path.startswith("/latest/meta-data/") or item not in stub.items:
                    return self._answer(404, "")
                self._answer(200, stub.items[item])

            def _answer(self, status: int, body: str):
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):   # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
