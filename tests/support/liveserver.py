"""``cloudmover up`` as a user starts it: a subprocess serving HTTPS (gunicorn,
self-signed certificate) with local workers, stopped with SIGTERM."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
import urllib3

BIN = Path(sys.executable).parent


class LiveServer:
    def __init__(self, data_dir: Path, port: int, *, env: dict | None = None, args: tuple = (),
                 omit_port: bool = False):
        """``omit_port``: start without --port, to check the default (``port`` must be it)."""
        self.data_dir, self.port = data_dir, port
        self.base = f"https://127.0.0.1:{port}"
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"
        self._env = {**os.environ, "CLOUDMOVER_INSTANCE_METADATA_URL": "", **(env or {})}
        self._args = args
        self._port_args = () if omit_port else ("--port", str(port))
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "LiveServer":
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen([str(BIN / "cloudmover"), "up", "--data-dir", str(self.data_dir),
                                         *self._port_args, *self._args],
                                        env=self._env, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        with_warnings_off = urllib3.disable_warnings  # the certificate is self-signed on purpose
        with_warnings_off(urllib3.exceptions.InsecureRequestWarning)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"cloudmover up exited: {self.output()[-3000:]}")
            try:
                requests.get(self.base + "/signin", verify=False, timeout=2)
                return self
            except requests.ConnectionError:
                time.sleep(0.2)
        raise RuntimeError(f"cloudmover up did not answer within 60 s: {self.output()[-3000:]}")

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    @property
    def initial_password(self) -> str:
        return (self.data_dir / "initial-admin-password").read_text().strip()

    @property
    def api_token(self) -> str:
        return (self.data_dir / "api.token").read_text().strip()

    def __exit__(self, *exc_info) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()
