"""Tests of the local S3 servers (scripts/localservers.py) and tests/support/faultproxy.py."""

from __future__ import annotations

import hashlib
import io
import os
import random
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "scripts"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from localservers import MotoServer, SeaweedServer, free_ports  # noqa: E402
from tests.support.faultproxy import FaultProxy  # noqa: E402

pytestmark = pytest.mark.timeout(300)

NO_RETRIES = {"mode": "standard", "total_max_attempts": 1}
RETRIES = {"mode": "standard", "total_max_attempts": 10}
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def seaweed():
    with SeaweedServer(startup_timeout=60) as server:
        yield server


@pytest.fixture
def s3():
    """Make boto3 S3 clients for a server (optionally through another URL); closed afterwards."""
    made = []

    def make(server, *, endpoint_url=None, access_key=None, secret_key=None, retries=RETRIES):
        client = boto3.client(
            "s3",
            endpoint_url=endpoint_url or server.endpoint_url,
            aws_access_key_id=access_key or server.access_key,
            aws_secret_access_key=secret_key or server.secret_key,
            region_name=server.region,
            config=Config(retries=retries, connect_timeout=5, read_timeout=60),
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def _code(exc_info: pytest.ExceptionInfo[ClientError]) -> str:
    return exc_info.value.response["Error"]["Code"]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _new_bucket(client) -> str:
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return bucket


def test_seaweed_put_get_stop_with_auth(seaweed, s3):
    with SeaweedServer(buckets=["alpha", "beta"]) as server:
        assert server.endpoint_url != seaweed.endpoint_url
        assert not set(server.ports.values()) & set(seaweed.ports.values())
        assert server.log_path.is_file() and server.log_path.parent == server.data_dir
        client = s3(server)
        assert {b["Name"] for b in client.list_buckets()["Buckets"]} == {"alpha", "beta"}
        client.put_object(Bucket="alpha", Key="dir/hello.txt", Body=b"hello", Metadata={"k": "v"})
        got = client.get_object(Bucket="alpha", Key="dir/hello.txt")
        assert got["Body"].read() == b"hello" and got["Metadata"] == {"k": "v"}
        with pytest.raises(ClientError) as missing:
            client.put_object(Bucket="no-such-bucket", Key="k", Body=b"x")
        assert _code(missing) == "NoSuchBucket"

        for access_key, secret_key, expected in [
            ("WRONGKEY", None, "InvalidAccessKeyId"),
            (None, "wrong-secret", "SignatureDoesNotMatch"),
        ]:
            bad = s3(server, access_key=access_key, secret_key=secret_key, retries=NO_RETRIES)
            with pytest.raises(ClientError) as denied_list:
                bad.list_buckets()
            with pytest.raises(ClientError) as denied_get:
                bad.get_object(Bucket="alpha", Key="dir/hello.txt")
            assert _code(denied_list) == _code(denied_get) == expected
        process, data_dir, ports = server.process, server.data_dir, server.ports
    assert process.poll() is not None
    assert server.process is None and not data_dir.exists()
    assert not any(_port_open(port) for port in ports.values())


def test_seaweed_refuses_a_fixed_port_in_use():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = SeaweedServer(s3_port=busy.getsockname()[1])
        with pytest.raises(RuntimeError, match="already in use"):
            server.start()
    assert server.process is None and server.data_dir is None


def test_seaweed_keeps_given_dir(tmp_path, s3):
    with SeaweedServer(tmp_path / "data", buckets=["keep"]) as server:
        s3(server).put_object(Bucket="keep", Key="k", Body=b"v")
    with SeaweedServer(tmp_path / "data") as server:
        assert s3(server).get_object(Bucket="keep", Key="k")["Body"].read() == b"v"
    assert (tmp_path / "data" / "weed.log").is_file()


def test_seaweed_main_runs_in_foreground_on_fixed_port(tmp_path, s3):
    port = free_ports(1)[0]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "localservers.py"), "seaweed",
         "--dir", str(tmp_path / "d"), "--port", str(port), "--buckets", "one,two"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        banner = []
        for line in proc.stdout:  # up to the banner; pytestmark's timeout bounds the wait
            banner.append(line)
            if "Ctrl-C" in line:
                break
        text = "".join(banner)
        assert f"AWS_ENDPOINT_URL=http://127.0.0.1:{port}" in text, text
        server = SimpleNamespace(endpoint_url=f"http://127.0.0.1:{port}", region="us-east-1",
                                 access_key="cloudmover", secret_key="cloudmover-secret")
        names = {b["Name"] for b in s3(server).list_buckets()["Buckets"]}
        assert names == {"one", "two"}
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
    finally:
        if proc.poll() is None:  # SIGTERM lets main() stop weed, which runs in its own session
            proc.terminate()
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
    assert not _port_open(port)


def test_moto_start_reset_stop(s3):
    with MotoServer() as moto:
        client = s3(moto)
        client.create_bucket(Bucket="moto-bucket")
        client.put_object(Bucket="moto-bucket", Key="k", Body=b"v")
        assert client.get_object(Bucket="moto-bucket", Key="k")["Body"].read() == b"v"
        moto.reset()
        assert client.list_buckets()["Buckets"] == []
        process, port = moto.process, moto.port
    assert process.poll() is not None and not _port_open(port)


def test_faultproxy_fault_share_is_seeded(seaweed, s3):
    bucket = _new_bucket(s3(seaweed))
    rate, seed, count = 0.3, 1234, 80
    replay = random.Random(seed)
    expected = [replay.random() < rate for _ in range(count)]
    with FaultProxy(seaweed.endpoint_url, fault_rate=rate, seed=seed) as proxy:
        client = s3(seaweed, endpoint_url=proxy.endpoint_url, retries=NO_RETRIES)
        seen = []
        for _ in range(count):
            try:
                client.list_objects_v2(Bucket=bucket)
                seen.append(False)
            except ClientError as exc:
                assert exc.response["Error"]["Code"] == "SlowDown"
                assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 503
                seen.append(True)
    assert seen == expected
    assert proxy.faults == sum(expected) and proxy.forwarded == count - sum(expected)
    assert 0.15 < proxy.faults / count < 0.45


def test_faultproxy_every_nth_and_methods(seaweed, s3):
    client = s3(seaweed)
    bucket = _new_bucket(client)
    client.put_object(Bucket=bucket, Key="k", Body=b"v")
    with FaultProxy(seaweed.endpoint_url, every_nth=1, methods=["put", "HEAD"]) as proxy:
        proxied = s3(seaweed, endpoint_url=proxy.endpoint_url, retries=NO_RETRIES)
        assert proxied.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
        with pytest.raises(ClientError) as small_put:
            proxied.put_object(Bucket=bucket, Key="small", Body=b"x" * 1000)
        with pytest.raises(ClientError) as big_put:  # boto3 sends Expect: 100-continue
            proxied.put_object(Bucket=bucket, Key="big", Body=b"x" * (2 * MIB))
        with pytest.raises(ClientError) as head:
            proxied.head_object(Bucket=bucket, Key="k")
        assert (_code(small_put), _code(big_put)) == ("SlowDown", "SlowDown")
        assert head.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert (proxy.faults, proxy.forwarded) == (3, 1)
        proxy.every_nth = 2
        for _ in range(4):
            try:
                proxied.put_object(Bucket=bucket, Key="small", Body=b"y")
            except ClientError as exc:
                assert exc.response["Error"]["Code"] == "SlowDown"
        assert (proxy.faults, proxy.forwarded) == (5, 3)
    assert client.get_object(Bucket=bucket, Key="small")["Body"].read() == b"y"


def test_faultproxy_retried_20mib_put_get_succeeds(seaweed, s3):
    bucket = _new_bucket(s3(seaweed))
    payload = os.urandom(20 * MIB)
    digest = hashlib.sha256(payload).hexdigest()
    with FaultProxy(seaweed.endpoint_url, fault_rate=0.4, seed=7) as proxy:
        client = s3(seaweed, endpoint_url=proxy.endpoint_url)
        client.put_object(Bucket=bucket, Key="single", Body=payload)
        body = client.get_object(Bucket=bucket, Key="single")["Body"].read()
        assert hashlib.sha256(body).hexdigest() == digest
        transfer = TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB,
                                  max_concurrency=3)
        client.upload_fileobj(io.BytesIO(payload), bucket, "multi", Config=transfer)
        out = io.BytesIO()
        client.download_fileobj(bucket, "multi", out, Config=transfer)
        assert hashlib.sha256(out.getvalue()).hexdigest() == digest
    assert proxy.faults >= 3 and proxy.forwarded >= 8


def test_faultproxy_without_retries_surfaces_slowdown(seaweed, s3):
    bucket = _new_bucket(s3(seaweed))
    with FaultProxy(seaweed.endpoint_url, every_nth=1) as proxy:
        client = s3(seaweed, endpoint_url=proxy.endpoint_url, retries=NO_RETRIES)
        with pytest.raises(ClientError) as put:
            client.put_object(Bucket=bucket, Key="big", Body=os.urandom(20 * MIB))
        with pytest.raises(ClientError) as get:
            client.get_object(Bucket=bucket, Key="big")
        assert _code(put) == _code(get) == "SlowDown"
        assert "reduce your request rate" in str(get.value)
        assert (proxy.faults, proxy.forwarded) == (2, 0)


def test_faultproxy_in_front_of_moto(s3):
    with MotoServer() as moto, FaultProxy(moto.endpoint_url, every_nth=2) as proxy:
        client = s3(moto, endpoint_url=proxy.endpoint_url)
        client.create_bucket(Bucket="via-proxy")
        client.put_object(Bucket="via-proxy", Key="k", Body=b"v" * MIB)
        assert client.get_object(Bucket="via-proxy", Key="k")["Body"].read() == b"v" * MIB
        assert (proxy.faults, proxy.forwarded) == (2, 3)
