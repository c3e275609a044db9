"""``cloudmover cp --head-node``: the job runs on a head node that is already serving
(``cloudmover up`` over HTTPS), and cp follows it through the REST API."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from localservers import free_ports  # noqa: E402
from support.liveserver import LiveServer  # noqa: E402
from support.waiting import wait_for  # noqa: E402
from test_cp import put_corpus  # noqa: E402

MiB = 1 << 20


@pytest.fixture(scope="module")
def served(seaweed, tmp_path_factory):
    """``cloudmover up`` with SeaweedFS's keys (its workers copy raw s3:// locations with them)."""
    env = {"AWS_ACCESS_KEY_ID": seaweed.access_key, "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
           "AWS_DEFAULT_REGION": seaweed.region,
           "CLOUDMOVER_MULTIPART_THRESHOLD": str(5 * MiB), "CLOUDMOVER_PART_SIZE": str(5 * MiB)}
    data_dir = tmp_path_factory.mktemp("served") / "headnode"
    with LiveServer(data_dir, free_ports(1)[0], env=env) as server:
        yield server


def cp(*args, env_extra=None):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "CLOUDMOVER_"))}
    return subprocess.run([sys.executable, "-m", "headnode.cli", "cp", *args], env={**env, **(env_extra or {})},
                          capture_output=True, text=True, timeout=300)


def trusted(server) -> tuple:
    return ("--head-node", server.base, "--token-file", str(server.data_dir / "api.token"),
            "--ca-file", str(server.data_dir / "tls" / "cert.pem"))


def test_cp_runs_the_job_on_the_running_head_node(served, seaweed, buckets):
    source, dest = buckets
    client = seaweed.client()
    objects = {f"frames/{i:03d}.bin": os.urandom(1000 + i) for i in range(40)}
    objects["frames/big.bin"] = os.urandom(11 * MiB)   # above the served node's multipart threshold
    put_corpus(client, source, objects)

    result = cp(f"s3://{source}/frames/", f"s3://{dest}/copy/", "--recursive", "--json",
                "--endpoint-url", seaweed.endpoint_url, *trusted(served))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["state"] == "complete" and summary["copied"] == len(objects) and summary["failed"] == 0
    assert summary["bytes"] == sum(len(body) for body in objects.values())
    for key, body in objects.items():
        found = client.get_object(Bucket=dest, Key="copy/" + key.removeprefix("frames/"))["Body"].read()
        assert hashlib.sha256(found).digest() == hashlib.sha256(body).digest(), key

    listed = requests.get(f"{served.base}/api/v1/jobs", verify=str(served.data_dir / "tls" / "cert.pem"),
                          headers={"Authorization": f"Bearer {served.api_token}"}, timeout=30).json()
    assert summary["job_id"] in [job["id"] for job in listed]   # in the head node's history like any job

    # the same through the environment, with the progress bar: the summary line ends it
    again = cp(f"s3://{source}/frames/", f"s3://{dest}/again/", "--recursive", "--endpoint-url",
               seaweed.endpoint_url, env_extra={"CLOUDMOVER_HEAD_NODE": served.base,
                                                "CLOUDMOVER_API_TOKEN": served.api_token,
                                                "CLOUDMOVER_CA_FILE": str(served.data_dir / "tls" / "cert.pem")})
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"complete: {len(objects)} copied, 0 already present, 0 failed" in again.stdout
    assert served.api_token not in again.stdout + again.stderr


def hanging_up() -> int:
    """A port whose server reads each request and closes the connection without answering."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            connection, _ = listener.accept()
            with connection:
                connection.recv(65536)
    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


def test_cp_to_a_head_node_says_what_is_wrong_and_copies_nothing(served, seaweed, buckets, tmp_path):
    source, dest = buckets
    client = seaweed.client()
    client.put_object(Bucket=source, Key="a/one", Body=b"1")
    location = (f"s3://{source}/a/", f"s3://{dest}/b/", "--recursive", "--endpoint-url", seaweed.endpoint_url)
    wrong_token = tmp_path / "token"
    wrong_token.write_text("cm_not-a-token\n")
    ca = ("--ca-file", str(served.data_dir / "tls" / "cert.pem"))

    cases = {
        "wrong token": (cp(*location, "--head-node", served.base, "--token-file", str(wrong_token), *ca),
                        "The API token is wrong"),
        "no token": (cp(*location, "--head-node", served.base, *ca),
                     "--head-node needs an API token: set CLOUDMOVER_API_TOKEN or use --token-file"),
        "self-signed certificate not named": (
            cp(*location, "--head-node", served.base, "--token-file", str(served.data_dir / "api.token")),
            "the head node's certificate is not trusted"),
        "nothing listening": (
            cp(*location, "--head-node", f"https://127.0.0.1:{free_ports(1)[0]}",
               "--token-file", str(served.data_dir / "api.token"), *ca), "cannot reach the head node"),
        "connection closed without an answer": (
            cp(*location, "--head-node", f"http://127.0.0.1:{hanging_up()}",
               "--token-file", str(served.data_dir / "api.token")), "cannot reach the head node"),
        "missing bucket": (cp(f"s3://{source}/a/", f"s3://no-such-bucket-{dest}/b/", "--recursive",
                              "--endpoint-url", seaweed.endpoint_url, *trusted(served)), "no-such-bucket"),
        "missing CA file": (cp(*location, "--head-node", served.base, "--token-file",
                               str(served.data_dir / "api.token"), "--ca-file", str(tmp_path / "nothing.pem")),
                            "as the head node's certificate"),
        "both kinds of head node": (cp(*location, *trusted(served), "--data-dir", str(tmp_path / "d")),
                                    "--data-dir is for an embedded head node"),
    }
    for name, (result, said) in cases.items():
        assert result.returncode == 2, (name, result.stdout, result.stderr)
        assert said in result.stderr, (name, result.stderr)
        assert served.api_token not in result.stdout + result.stderr, name
    assert client.list_objects_v2(Bucket=dest).get("KeyCount", 0) == 0
    assert client.get_object(Bucket=source, Key="a/one")["Body"].read() == b"1"


def test_cp_that_loses_its_head_node_says_so_and_the_job_survives(seaweed, buckets, tmp_path):
    """The head node dies while cp follows a move: cp exits 1 naming the job, nothing is deleted,
    and the head node started again on its data directory finishes the move."""
    source, dest = buckets
    client = seaweed.client()
    objects = {f"m/{i:02d}": os.urandom(500 + i) for i in range(12)}
    put_corpus(client, source, objects)
    env = {"AWS_ACCESS_KEY_ID": seaweed.access_key, "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
           "AWS_DEFAULT_REGION": seaweed.region}
    data_dir, port = tmp_path / "headnode", free_ports(1)[0]
    with LiveServer(data_dir, port, env={**env, "CLOUDMOVER_FLEET": "none"}) as server:   # no workers: it waits
        following = subprocess.Popen(
            [sys.executable, "-m", "headnode.cli", "cp", f"s3://{source}/m/", f"s3://{dest}/m/", "--recursive",
             "--move", "--endpoint-url", seaweed.endpoint_url, *trusted(server)],
            env={key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "CLOUDMOVER_"))},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        headers = {"Authorization": f"Bearer {server.api_token}"}
        ca = str(data_dir / "tls" / "cert.pem")
        wait_for(lambda: requests.get(f"{server.base}/api/v1/jobs", headers=headers, verify=ca, timeout=30).json(),
                 timeout=60, what="cp's job on the head node")
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(30)
        stdout, stderr = following.communicate(timeout=120)
    assert following.returncode == 1, (stdout, stderr)
    assert "cloudmover: lost the head node while following job 1: cannot reach the head node" in stderr, stderr
    assert server.api_token not in stdout + stderr
    for key, body in objects.items():   # a move deletes nothing it has not copied and verified
        assert client.get_object(Bucket=source, Key=key)["Body"].read() == body, key

    with LiveServer(data_dir, port, env=env) as again:
        def finished():
            job = requests.get(f"{again.base}/api/v1/jobs/1", headers=headers, verify=ca, timeout=30).json()
            return job if job["finished_at"] else None
        job = wait_for(finished, timeout=180, what="the move to finish on the restarted head node")
    assert job["state"] == "complete" and job["objects_done"] == len(objects), job
    for key, body in objects.items():
        assert client.get_object(Bucket=dest, Key=key)["Body"].read() == body, key
    assert client.list_objects_v2(Bucket=source).get("KeyCount", 0) == 0
