"""The README's run command serves the UI over HTTPS on port 9090 through
gunicorn and says where and how to sign in."""
from __future__ import annotations

import re
import socket
import ssl

import pytest
import requests

from support.liveserver import LiveServer

DEFAULT_PORT = 9090


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "headnode"


def test_up_serves_https_on_9090_and_says_how_to_sign_in(data_dir, s3_env):
    if not port_free(DEFAULT_PORT):
        pytest.fail(f"port {DEFAULT_PORT} is taken on this machine: the default port cannot be checked")
    with LiveServer(data_dir, DEFAULT_PORT, omit_port=True) as server:
        printed = server.output()
        assert f"CloudMover is serving https://127.0.0.1:{DEFAULT_PORT}/ (UI)" in printed
        match = re.search(r"sign in as 'admin' with the initial password (\S+)", printed)
        assert match and match.group(1) == server.initial_password
        assert "you must change it at first sign-in" in printed
        certificate = ssl.get_server_certificate(("127.0.0.1", DEFAULT_PORT))
        assert certificate == (data_dir / "tls" / "cert.pem").read_text()
        answer = requests.get(f"https://127.0.0.1:{DEFAULT_PORT}/", verify=str(data_dir / "tls" / "cert.pem"),
                              allow_redirects=False, timeout=10)
        assert answer.status_code == 302 and answer.headers["Location"] == "/signin?next=/"
        assert "gunicorn" in printed.lower()
        with pytest.raises(requests.ConnectionError):   # HTTPS only
            requests.get(f"http://127.0.0.1:{DEFAULT_PORT}/signin", timeout=5)
    with LiveServer(data_dir, DEFAULT_PORT, omit_port=True) as again:   # a restart does not reset the password
        assert "initial password" not in again.output()
        assert "Sign in with your CloudMover user name and password." in again.output()
