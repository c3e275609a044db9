"""The worker user data, run on this machine: a head node with FLEET=ec2 launches
workers on the moto server; the user data of one of them is read back from EC2
and run with bash, with the instance metadata served by a local IMDSv2 stub and
CloudMover already installed (this venv). The worker it starts drains the SQS
bus on moto and copies between SeaweedFS buckets, opening the credentials
sealed into its tasks with the secret key it read from SSM."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys

import psutil
import pytest

from pipeline.credentials import sealing_key

from conftest import bus_config
from support.awsstub import AwsStub
from support.ec2world import Ec2World
from support.imds import MetadataStub
from support.objects import assert_same_objects, put_objects, small_and_large
from support.waiting import wait_finished, wait_for

REGION = "us-east-1"
MiB = 1 << 20


@pytest.fixture
def started_workers():
    """Pids of workers the user data started; each is stopped (SIGTERM, then SIGKILL) at the end."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            process = psutil.Process(pid)
            process.terminate()
            process.wait(30)
        except psutil.NoSuchProcess:
            continue
        except psutil.TimeoutExpired:
            process.kill()


@pytest.fixture
def aws_stub(moto):
    """support.awsstub in front of moto, for the two pre-flight calls moto lacks."""
    with AwsStub(moto.endpoint_url, quotas={("ec2", "L-1216C47A"): 10_000}) as stub:
        yield stub


def test_the_user_data_starts_a_worker_that_completes_a_copy(aws_stub, head_node, moto, seaweed, buckets, tmp_path,
                                                             started_workers, monkeypatch):
    from headnode.ec2api import user_data_of
    from headnode.models import RegionSettings, WorkerState
    world = Ec2World(moto)
    source, dest = buckets
    client = seaweed.client()
    objects = small_and_large(5, small=30, large=(6 * MiB + 7,))
    put_objects(client, source, objects)
    # the stores' keys travel sealed in the tasks; the process environment holds only the
    # moto account's, standing in for the instance roles of the head node and the worker
    keys = {"endpoint_url": seaweed.endpoint_url, "access_key_id": seaweed.access_key,
            "secret_access_key": seaweed.secret_key, "region": REGION}
    folders = {"src": {"bucket": source, **keys}, "dst": {"bucket": dest, **keys}}
    for name, value in (("AWS_ACCESS_KEY_ID", moto.access_key), ("AWS_SECRET_ACCESS_KEY", moto.secret_key)):
        monkeypatch.setenv(name, value)
    node = head_node(**world.settings(aws_stub.endpoint_url, **bus_config("sqs", tmp_path, moto)), FOLDERS=folders,
                     MULTIPART_THRESHOLD=5 * MiB, PART_SIZE=5 * MiB, EC2_IDLE_SECONDS=3600)
    vpc, subnet = world.network(REGION)
    RegionSettings.create(region=REGION, vpc_id=vpc, subnet_id=subnet, head_node_path="private")
    job = node.service.create(source="folder:src/", destination="folder:dst/copy/", tier="express")

    node_id = node.fleet.settings.node_id
    instance = wait_for(lambda: world.instances(REGION, node_id=node_id), timeout=60, what="worker instances")[0]
    script = user_data_of(world.client("ec2", REGION), instance["InstanceId"])
    assert node.config["SECRET_KEY"] not in script and seaweed.secret_key not in script
    home = tmp_path / "instance"
    (tmp_path / "user-data").write_text(script)

    with MetadataStub({"instance-id": instance["InstanceId"], "placement/region": REGION}) as imds:
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8",
               "AWS_ACCESS_KEY_ID": moto.access_key, "AWS_SECRET_ACCESS_KEY": moto.secret_key,
               "CLOUDMOVER_HOME": str(home), "CLOUDMOVER_VENV": sys.prefix, "CLOUDMOVER_SKIP_INSTALL": "1",
               "CLOUDMOVER_IMDS_URL": imds.url, "CLOUDMOVER_SSM_ENDPOINT_URL": moto.endpoint_url}
        run = subprocess.run([shutil.which("bash"), str(tmp_path / "user-data")], env=env, cwd=tmp_path,
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        started_workers.append(int((home / "worker.pid").read_text()))
        requests = list(imds.requests)
    assert f"instance {instance['InstanceId']} in {REGION}" in run.stderr
    assert requests[0] == ("PUT", "/latest/api/token", False)
    assert {(m, p, t) for m, p, t in requests[1:]} == {("GET", "/latest/meta-data/placement/region", True),
                                                       ("GET", "/latest/meta-data/instance-id", True)}

    pid = started_workers[0]
    assert f"cloudmover-worker --region {REGION}" in " ".join(psutil.Process(pid).cmdline())
    done = wait_finished(node.service, job.id)
    assert done.state == "complete", (done.error, (home / "worker.log").read_text()[-3000:])
    assert (done.objects_done, done.bytes_done) == (len(objects), sum(len(b) for b in objects.values()))
    assert_same_objects(client, dest, objects, prefix="copy/")
    # the events came from that worker: its heartbeats name its pid
    wait_for(lambda: any(w.worker_id.rsplit("-", 2)[1] == str(pid) for w in WorkerState.select()), timeout=30,
             what="a heartbeat from the bootstrapped worker")

    environment = home / "worker.env"
    assert stat.S_IMODE(environment.stat().st_mode) == 0o600
    lines = environment.read_text().splitlines()
    assert f"CLOUDMOVER_SEALING_KEY={sealing_key(node.config['SECRET_KEY'])}" in lines
    assert node.config["SECRET_KEY"] not in "\n".join(lines)   # workers cannot sign the head node's sessions
    assert f"AWS_DEFAULT_REGION={REGION}" in lines

    process = psutil.Process(pid)
    process.terminate()                        # SIGTERM: the worker finishes its tasks and exits
    process.wait(60)                           # (not this process's child: no exit code to read)
    assert not process.is_running()


# -- how workers reach the head node ------------------------------------------------------------
@pytest.mark.parametrize("path, item, address", [("private", "local-ipv4", "10.0.3.7"),
                                                 ("public", "public-ipv4", "203.0.113.9")])
def test_the_head_nodes_address_comes_from_its_instance_metadata_when_not_configured(path, item, address):
    from headnode.config import load_config
    from headnode.userdata import head_node_address
    with MetadataStub({item: address}) as imds:
        config = load_config({"INSTANCE_METADATA_URL": imds.url}, env={})
        assert head_node_address(config, path) == address
        assert [(m, p) for m, p, _ in imds.requests] == [("PUT", "/latest/api/token"),
                                                         ("GET", f"/latest/meta-data/{item}")]
        configured = load_config({"INSTANCE_METADATA_URL": imds.url, "HEAD_NODE_PUBLIC_IP": "198.51.100.1",
                                  "HEAD_NODE_PRIVATE_IP": "10.9.9.9"}, env={})
        assert head_node_address(configured, path) == {"private": "10.9.9.9", "public": "198.51.100.1"}[path]
        assert len(imds.requests) == 2   # a configured address is not looked up


def test_a_head_node_without_a_public_ip_says_what_to_set():
    from headnode.config import load_config
    from headnode.userdata import UserDataError, head_node_address
    with MetadataStub({"local-ipv4": "10.0.3.7"}) as imds:   # an instance without a public IP: 404
        config = load_config({"INSTANCE_METADATA_URL": imds.url}, env={})
        with pytest.raises(UserDataError, match="the head node's public IP is unknown: set HEAD_NODE_PUBLIC_IP"):
            head_node_address(config, "public")


@pytest.mark.parametrize("url, expected", [
    ("sqs://", "sqs://"),
    ("sqs://KEY:SECRET@127.0.0.1:9324", "sqs://KEY:SECRET@10.0.3.7:9324"),
    ("sqs://localhost:9324", "sqs://10.0.3.7:9324"),
    ("sqs://KEY:SECRET@sqs.example.net:443", "sqs://KEY:SECRET@sqs.example.net:443"),
])
def test_a_broker_on_the_head_nodes_loopback_is_reached_at_its_address(url, expected):
    from headnode.userdata import worker_bus_url
    assert worker_bus_url(url, "10.0.3.7") == expected


def test_a_setting_with_a_line_break_cannot_go_into_the_user_data():
    from headnode.userdata import UserDataError, render
    with pytest.raises(UserDataError, match="CLOUDMOVER_QUEUE_PREFIX holds a line break"):
        render(region="eu-west-1", software="0.1.0", head_node="10.0.0.5", secret_parameter="/p",
               worker_env={"CLOUDMOVER_QUEUE_PREFIX": "a\nCLOUDMOVER_ENV\nrm -rf /"})
