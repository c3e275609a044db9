"""Shared fixtures: real servers on 127.0.0.1 and head nodes built on them.

``seaweed`` is a SeaweedFS S3 server (authentication on) for the session;
``moto`` a moto server (S3/SQS/SNS/EC2) for the session. ``buckets`` makes a
fresh source/destination pair per test. ``head_node`` builds a started head
node with local worker processes over the chosen bus; ``api`` serves its REST
API over HTTP on a free port.
"""
from __future__ import annotations

import itertools
import os
import sys
import threading
import uuid
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from localservers import MotoServer, SeaweedServer  # noqa: E402

_names = itertools.count()


@pytest.fixture(scope="session")
def seaweed():
    with SeaweedServer() as server:
        yield server


@pytest.fixture(scope="session")
def moto():
    with MotoServer() as server:
        yield server


@pytest.fixture
def s3_env(seaweed, monkeypatch):
    """Credentials of the SeaweedFS server in the environment (inherited by workers)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", seaweed.region)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    return seaweed


@pytest.fixture
def buckets(s3_env):
    """A fresh (source, destination) bucket pair on SeaweedFS."""
    client = s3_env.client()
    tag = f"{os.getpid()}-{next(_names)}-{uuid.uuid4().hex[:6]}"
    names = (f"src-{tag}", f"dst-{tag}")
    for name in names:
        client.create_bucket(Bucket=name)
    return names


def bus_config(kind: str, tmp_path: Path, moto_server=None) -> dict:
    """Head node settings for the embedded on-disk bus or SQS on the moto server."""
    if kind == "sqlite":
        return {}
    host_port = moto_server.endpoint_url.split("://", 1)[1]
    return {"BUS_URL": f"sqs://testing:testing@{host_port}",
            "BUS_OPTIONS": {"region": "us-east-1", "is_secure": False},
            "QUEUE_PREFIX": f"cm{uuid.uuid4().hex[:8]}-"}


@pytest.fixture
def head_node(tmp_path, request):
    """Factory: a started head node; stopped (with its workers) after the test."""
    from headnode.node import HeadNode
    started = []

    def build(workers: int = 2, **overrides):
        settings = {"DATA_DIR": str(tmp_path / f"node{len(started)}"), "TESTING": True, "TLS": False,
                    "SECRET_KEY": "test-secret", "API_TOKEN": "test-token", "VISIBILITY_TIMEOUT": 20,
                    "LOCAL_WORKERS": {"express": workers, "plus": workers, "ultra": workers},
                    "WORKER_THREADS": 2, "OBJECT_THREADS": 8}
        settings.update(overrides)
        node = HeadNode(settings).start()
        started.append(node)
        return node

    yield build
    for node in started:
        node.stop()


class ApiClient:
    def __init__(self, base: str, token: str):
        self.base, self.session = base, requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def __getattr__(self, method):
        return lambda path, **kw: self.session.request(method.upper(), self.base + path, timeout=30, **kw)


@pytest.fixture
def api():
    """Factory: serve a head node's REST API on a free port over real HTTP."""
    from werkzeug.serving import make_server
    from headnode.app import create_app
    servers = []

    def serve(node) -> ApiClient:
        server = make_server("127.0.0.1", 0, create_app(node=node), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return ApiClient(f"http://127.0.0.1:{server.port}/api/v1", node.config["API_TOKEN"])

    yield serve
    for server in servers:
        server.shutdown()


@pytest.fixture
def web(tmp_path):
    """Factory: a head node (no workers unless asked) whose UI and API are served over real HTTP."""
    from headnode.app import create_app
    from headnode.node import HeadNode
    from support.web import ServedApp
    made = []

    def build(start: bool = False, **overrides) -> ServedApp:
        settings = {"DATA_DIR": str(tmp_path / f"web{len(made)}"), "TESTING": True, "TLS": False,
                    "FLEET": "none", "INSTANCE_METADATA_URL": "", "VISIBILITY_TIMEOUT": 20,
                    "WORKER_THREADS": 2, "OBJECT_THREADS": 8}
        settings.update(overrides)
        node = HeadNode(settings)
        served = ServedApp(create_app(node=node))
        made.append((served, node))
        if start:
            node.start()
        return served

    yield build
    for served, node in made:
        served.close()
        node.stop()


@pytest.fixture
def start_worker(tmp_path):
    """Factory: a worker process for a node's region started by hand (a node with FLEET=none),
    with the environment the node's fleet would give it."""
    import subprocess
    from headnode.fleet import worker_env
    from support.processes import stop_process
    processes = []

    def start(node, region: str = "us-east-1"):
        env = {**os.environ, **worker_env(node.config)}
        with open(tmp_path / f"worker{len(processes)}.log", "ab") as output:
            processes.append(subprocess.Popen([sys.executable, "-m", "worker.main", "--region", region], env=env,
                                              stdin=subprocess.DEVNULL, stdout=output, stderr=output))
        return processes[-1]

    yield start
    for process in processes:
        stop_process(process)
