"""The ``ec2`` fleet provider against the moto server over HTTP: head nodes with
FLEET=ec2 launch worker instances per region and tier (sized, typed, tagged,
bootstrapped), end them when the region goes idle, sweep leftovers of a crashed
run, and put EC2's refusals in the jobs' logs. Moto's instances run no code:
where a job must finish, the test starts a local worker process on the bus."""
from __future__ import annotations

import os

import pytest

from pipeline.credentials import sealing_key

from conftest import bus_config
from support.awsstub import AwsStub
from support.ec2world import AMI_PARAMETER, Ec2World, tags
from support.objects import put_objects
from support.waiting import wait_finished, wait_for

REGION = "us-east-1"
STANDARD_QUOTA = ("ec2", "L-1216C47A")   # Running On-Demand Standard instances, in vCPUs


@pytest.fixture
def world(moto):
    return Ec2World(moto)


@pytest.fixture
def aws_stub(moto):
    """support.awsstub in front of moto: it answers the two pre-flight calls moto lacks (the
    PassRole simulation, the EC2 vCPU quota) and passes every other request to moto."""
    with AwsStub(moto.endpoint_url, quotas={STANDARD_QUOTA: 10_000}) as stub:
        yield stub


@pytest.fixture
def ec2_node(aws_stub, head_node, world, moto, tmp_path):
    """Factory: a started head node with FLEET=ec2 on the moto account (through ``aws_stub``,
    which outlives it: stopping it terminates its workers), SQS bus on moto."""
    def build(**overrides):
        return head_node(**world.settings(aws_stub.endpoint_url, **bus_config("sqs", tmp_path, moto)), **overrides)
    return build


def configure(region: str, world: Ec2World, path: str = "private") -> tuple[str, str]:
    """The admin's Worker EC2 settings for ``region``: a fresh VPC and subnet there."""
    from headnode.models import RegionSettings
    vpc, subnet = world.network(region)
    RegionSettings.create(region=region, vpc_id=vpc, subnet_id=subnet, head_node_path=path)
    return vpc, subnet


def submit(node, buckets, s3_env, **options):
    source, dest = buckets
    return node.service.create(source=f"s3://{source}/", destination=f"s3://{dest}/",
                               endpoint_url=s3_env.endpoint_url, **options)


def launched(world, node, region: str, count: int) -> list[dict]:
    """Wait for ``count`` workers of ``node`` in ``region``; then one more reconcile must add none."""
    node_id = node.fleet.settings.node_id
    wait_for(lambda: len(world.instances(region, node_id=node_id)) >= count, timeout=60,
             what=f"{count} worker instances in {region}")
    node.fleet.reconcile(node._active_regions())
    found = world.instances(region, node_id=node_id)
    assert len(found) == count, f"{len(found)} instances, expected {count}"
    return found


# -- launching --------------------------------------------------------------------------------
@pytest.mark.parametrize("tier, count", [("express", 4), ("plus", 12), ("ultra", 40)])
def test_a_tier_launches_its_workers_in_the_destination_regions_subnet(tier, count, ec2_node, world, buckets,
                                                                       s3_env):
    from headnode.ec2api import user_data_of
    from headnode.models import JobLog, WorkerInstance
    put_objects(s3_env.client(), buckets[0], {f"k{i}": b"x" * 100 for i in range(5)})
    node = ec2_node()
    vpc, subnet = configure(REGION, world)
    job = submit(node, buckets, s3_env, tier=tier)

    instances = launched(world, node, REGION, count)
    node_id = node.fleet.settings.node_id
    ec2 = world.client("ec2", REGION)
    for instance in instances:
        assert instance["InstanceType"] == "m5.xlarge"
        assert (instance["SubnetId"], instance["VpcId"]) == (subnet, vpc)
        assert instance["ImageId"] == world.ami(REGION)   # resolved from the SSM parameter
        assert instance["MetadataOptions"]["HttpTokens"] == "required"
        assert tags(instance) == {"cloudmover:role": "worker", "cloudmover:region": REGION,
                                  "cloudmover:jobs": str(job.id), "cloudmover:head-node": node_id,
                                  "Name": f"CloudMover worker {REGION} (job {job.id})"}
        group = ec2.describe_security_groups(GroupIds=[g["GroupId"] for g in instance["SecurityGroups"]])
        assert [(g["GroupName"], g["VpcId"]) for g in group["SecurityGroups"]] == [("default", vpc)]
    # moto associates the profile with the first instance of a launch only; AWS with every one
    profiles = {i["IamInstanceProfile"]["Arn"] for i in instances if i.get("IamInstanceProfile")}
    assert profiles == {f"arn:aws:iam::123456789012:instance-profile/{world.profile}"}

    script = user_data_of(ec2, instances[-1]["InstanceId"])
    assert script.startswith("#!/bin/bash\n")
    for line in (f"CM_REGION={REGION}", "CM_SOFTWARE=0.1.0", "CM_HEAD_NODE=127.0.0.1",
                 f"CM_SECRET_PARAMETER=/cloudmover/{node_id}/secret-key",
                 f"CLOUDMOVER_BUS_URL={node.config['BUS_URL']}", f"CLOUDMOVER_QUEUE_PREFIX={node.config['QUEUE_PREFIX']}"):
        assert line in script.splitlines(), line
    assert node.config["SECRET_KEY"] not in script
    secret = world.client("ssm", REGION).get_parameter(Name=f"/cloudmover/{node_id}/secret-key", WithDecryption=True)
    assert secret["Parameter"]["Value"] == sealing_key(node.config["SECRET_KEY"])   # never the secret itself

    rows = list(WorkerInstance.select().where(WorkerInstance.region == REGION))
    assert sorted(r.instance_id for r in rows) == sorted(i["InstanceId"] for i in instances)
    assert {(r.instance_type, tuple(r.jobs), r.terminated_at) for r in rows} == {("m5.xlarge", (job.id,), None)}
    assert JobLog.select().where((JobLog.job == job.id)
                                 & JobLog.message.startswith(f"launched {count} m5.xlarge worker")).exists()


def test_a_job_holding_a_300_MB_file_gets_the_larger_type(ec2_node, world, buckets, s3_env):
    from headnode.models import Job
    client = s3_env.client()
    client.put_object(Bucket=buckets[0], Key="film/reel.mov", Body=b"\0" * 300_000_000)
    put_objects(client, buckets[0], {"film/notes.txt": b"notes"})
    node = ec2_node()
    configure(REGION, world)
    job = submit(node, buckets, s3_env, tier="express")

    instances = launched(world, node, REGION, 4)
    assert {i["InstanceType"] for i in instances} == {"m5.2xlarge"}
    assert Job.get_by_id(job.id).largest_object == 300_000_000


def test_an_encode_job_launches_c5_9xlarge_in_the_source_region(ec2_node, world, buckets, s3_env):
    source, dest = buckets
    put_objects(s3_env.client(), source, {"scan/0001.dpx": b"\0" * 4096})
    folders = {name: {"bucket": bucket, "region": region, "endpoint_url": s3_env.endpoint_url}
               for name, bucket, region in (("src", source, "eu-west-1"), ("dst", dest, "us-west-2"))}
    node = ec2_node(FOLDERS=folders)
    _, subnet = configure("eu-west-1", world)
    configure("us-west-2", world)
    job = node.service.create(source="folder:src/", destination="folder:dst/", codec="compress", tier="express")
    assert job.region == "eu-west-1"

    instances = launched(world, node, "eu-west-1", 5)
    assert {(i["InstanceType"], i["SubnetId"]) for i in instances} == {("c5.9xlarge", subnet)}
    assert world.instances("us-west-2", node_id=node.fleet.settings.node_id) == []


def test_concurrent_jobs_in_a_region_share_a_fleet_up_to_the_cap(ec2_node, world, buckets, s3_env):
    put_objects(s3_env.client(), buckets[0], {"a": b"1", "b": b"2"})
    node = ec2_node(EC2_MAX_WORKERS_PER_REGION=20)
    configure(REGION, world)
    express = submit(node, buckets, s3_env, tier="express")
    launched(world, node, REGION, 4)
    plus = submit(node, buckets, s3_env, tier="plus")
    launched(world, node, REGION, 16)
    ultra = submit(node, buckets, s3_env, tier="ultra")

    instances = launched(world, node, REGION, 20)   # 4 + 12 + 40 asked, the cap allows 20
    by_job = {}
    for instance in instances:
        by_job[tags(instance)["cloudmover:jobs"]] = by_job.get(tags(instance)["cloudmover:jobs"], 0) + 1
    assert by_job == {str(express.id): 4, str(plus.id): 12, str(ultra.id): 4}


# -- ending ---------------------------------------------------------------------------------------
def test_workers_end_once_the_queue_has_drained_and_the_idle_time_passed(ec2_node, world, buckets, s3_env,
                                                                         start_worker):
    from headnode.models import WorkerInstance
    put_objects(s3_env.client(), buckets[0], {f"k{i}": b"y" * 1000 for i in range(20)})
    node = ec2_node(EC2_IDLE_SECONDS=1)
    configure(REGION, world)
    job = submit(node, buckets, s3_env, tier="express")
    instances = launched(world, node, REGION, 4)

    start_worker(node)
    assert wait_finished(node.service, job.id).state == "complete"
    node_id = node.fleet.settings.node_id
    wait_for(lambda: world.instances(REGION, node_id=node_id) == [], timeout=60, what="the idle workers to end")
    ended = world.instances(REGION, node_id=node_id, states=("shutting-down", "terminated"))
    assert sorted(i["InstanceId"] for i in ended) == sorted(i["InstanceId"] for i in instances)
    rows = list(WorkerInstance.select())
    assert len(rows) == 4 and all(r.terminated_at and r.end_reason == "idle" for r in rows)
    from headnode.usage import job_usage
    report = job_usage(node.service.get(job.id), node.config)   # what the job's API answer carries
    assert [(line["instance_type"], line["instances"]) for line in report["lines"]] == [("m5.xlarge", 4)]
    assert report["instance_hours"] > 0 and report["still_running"] == 0
    assert report["cost"] == pytest.approx(report["instance_hours"] * report["lines"][0]["price_per_hour"])


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def direct(tmp_path, moto, world, monkeypatch):
    """Ec2Fleet on its own, with real Job rows, the moto account, an SQS bus on moto and a
    hand-driven clock: ``direct.fleet(**settings)``, ``direct.job(tier)``."""
    from headnode import models
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto.access_key)      # the head node's role, on EC2
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto.secret_key)
    from headnode.config import load_config
    from headnode.ec2api import AwsClients
    from headnode.ec2fleet import Ec2Fleet, Ec2Settings
    from headnode.userdata import Bootstrap
    from pipeline.bus import Bus, BusConfig, task_queue

    class Direct:
        config = load_config({"DATA_DIR": str(tmp_path), "SECRET_KEY": "direct-secret",
                              **bus_config("sqs", tmp_path, moto), **world.settings()})
        clock = Clock()
        fleets = []

        def __init__(self):
            self.database = models.connect(self.config["DATABASE"])
            self.bus = Bus(BusConfig(url=self.config["BUS_URL"], transport_options=self.config["BUS_OPTIONS"],
                                     prefix=self.config["QUEUE_PREFIX"]))
            self.bus.ensure(task_queue(REGION))

        def job(self, tier: str = "express", codec: str = "none"):
            return models.Job.create(name="j", source_url="s3://a/", destination_url="s3://b/", source={},
                                     destination={}, options={"tier": tier, "codec": codec}, region=REGION)

        def fleet(self, **settings):
            fleet = Ec2Fleet(Ec2Settings(**{"node_id": f"direct-{os.urandom(4).hex()}",
                                            "worker_profile": world.profile, "ami": world.ami(REGION),
                                            **settings}),
                             clients=AwsClients(moto.endpoint_url), bootstrap=Bootstrap(self.config),
                             queue_size=lambda region: self.bus.size(task_queue(region)), clock=self.clock)
            self.fleets.append(fleet)
            return fleet

    made = Direct()
    yield made
    for fleet in made.fleets:
        fleet.stop_all()
    made.bus.close()
    made.database.close()


def test_a_task_still_queued_keeps_an_idle_regions_workers(direct, world):
    """Workers end only once the queue has been empty for the idle time; a job arriving
    meanwhile keeps them (and the idle time starts over after it)."""
    from headnode.demand import JobDemand
    from pipeline.bus import task_queue
    configure(REGION, world)
    job = direct.job()
    fleet = direct.fleet(idle_seconds=60)
    demand = {REGION: [JobDemand(job_id=job.id, tier="express")]}
    fleet.reconcile(demand)
    assert len(fleet.instances(REGION)) == 4
    direct.bus.publish(task_queue(REGION), {"left": "over"})
    fleet.reconcile({})                        # the job finished: idle from now
    direct.clock.now += 61
    fleet.reconcile({})                        # idle long enough, but a task waits: they stay
    assert len(fleet.instances(REGION)) == 4
    delivery = wait_for(lambda: direct.bus.receive(task_queue(REGION), timeout=1), timeout=30, what="the task")
    delivery.ack()
    direct.clock.now += 30
    fleet.reconcile({})
    assert len(fleet.instances(REGION)) == 4   # empty for 30 s only
    fleet.reconcile(demand)                    # a job again
    direct.clock.now += 59
    fleet.reconcile({})
    direct.clock.now += 59
    fleet.reconcile({})
    assert len(fleet.instances(REGION)) == 4
    direct.clock.now += 2
    fleet.reconcile({})
    assert fleet.instances(REGION) == {}
    assert world.instances(REGION, node_id=fleet.settings.node_id) == []


def test_a_new_job_takes_over_idle_workers_of_its_type_and_the_rest_end_as_surplus(direct, world):
    from headnode.demand import JobDemand
    from headnode.models import WorkerInstance
    configure(REGION, world)
    first, second = direct.job("plus"), direct.job("express")
    fleet = direct.fleet()
    fleet.reconcile({REGION: [JobDemand(job_id=first.id, tier="plus")]})
    assert len(fleet.instances(REGION)) == 12

    fleet.reconcile({REGION: [JobDemand(job_id=second.id, tier="express")]})   # the first job finished
    workers = fleet.instances(REGION)
    assert len(workers) == 4 and all(w.jobs == [first.id, second.id] for w in workers.values())
    listed = world.instances(REGION, node_id=fleet.settings.node_id)
    assert sorted(i["InstanceId"] for i in listed) == sorted(workers)
    assert {tags(i)["cloudmover:jobs"] for i in listed} == {f"{first.id},{second.id}"}
    rows = list(WorkerInstance.select())
    assert sum(1 for r in rows if r.end_reason == "surplus") == 8
    assert {run[0] for run in WorkerInstance.runs_for(second.id)} == {"m5.xlarge"}


def test_the_sweeper_ends_a_crashed_runs_leftover_workers_and_leaves_other_head_nodes_alone(ec2_node, world,
                                                                                           tmp_path, monkeypatch):
    from headnode import models
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", world.moto.access_key)      # the head node's role, on EC2
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", world.moto.secret_key)
    vpc, subnet = world.network(REGION)
    ec2 = world.client("ec2", REGION)

    def leave(node_id: str, count: int) -> list[str]:
        tagged = [{"Key": "cloudmover:role", "Value": "worker"}, {"Key": "cloudmover:region", "Value": REGION},
                  {"Key": "cloudmover:jobs", "Value": "7"}, {"Key": "cloudmover:head-node", "Value": node_id}]
        answer = ec2.run_instances(ImageId=world.ami(REGION), InstanceType="m5.xlarge", MinCount=count,
                                   MaxCount=count, SubnetId=subnet,
                                   TagSpecifications=[{"ResourceType": "instance", "Tags": tagged}])
        return [i["InstanceId"] for i in answer["Instances"]]

    node_id = f"crashed-{os.urandom(4).hex()}"
    ours, theirs = leave(node_id, 3), leave(f"other-{os.urandom(4).hex()}", 2)
    # what the crashed run left in its database: the region's settings, two of its workers' rows
    data_dir = tmp_path / "crashed"
    data_dir.mkdir()
    database = models.connect(str(data_dir / "cloudmover.db"))
    models.RegionSettings.create(region=REGION, vpc_id=vpc, subnet_id=subnet)
    for instance_id in ours[:2]:
        models.WorkerInstance.create(instance_id=instance_id, region=REGION, instance_type="m5.xlarge", jobs=[7])
    database.close()

    node = ec2_node(HEAD_NODE_ID=node_id, DATA_DIR=str(data_dir))
    wait_for(lambda: world.instances(REGION, node_id=node_id) == [], timeout=60, what="the leftovers to end")
    still = {i["InstanceId"] for i in world.instances(REGION)}
    assert set(theirs) <= still and not set(ours) & still
    rows = {r.instance_id: r for r in models.WorkerInstance.select()}
    assert set(rows) == set(ours)
    assert {(r.instance_type, r.end_reason, tuple(r.jobs)) for r in rows.values()} == {("m5.xlarge", "leftover", (7,))}
    assert all(r.terminated_at for r in rows.values())
    assert node.fleet.instances(REGION) == {}


def test_a_restarted_head_node_takes_over_the_workers_its_running_jobs_still_use(direct, world):
    """A head node that crashed mid-job and came back (same id, same database) goes on with the
    workers it had, instead of launching the job's instances again."""
    from headnode.demand import JobDemand
    from headnode.models import WorkerInstance
    configure(REGION, world)
    job = direct.job()
    demand = {REGION: [JobDemand(job_id=job.id, tier="express")]}
    crashed = direct.fleet()
    crashed.reconcile(demand)
    before = set(crashed.instances(REGION))
    direct.fleets.remove(crashed)               # it never stops: it crashed

    restarted = direct.fleet(node_id=crashed.settings.node_id)
    restarted.reconcile(demand)
    assert set(restarted.instances(REGION)) == before and len(before) == 4
    assert {i["InstanceId"] for i in world.instances(REGION, node_id=crashed.settings.node_id)} == before
    assert WorkerInstance.select().count() == 4 and not WorkerInstance.select().where(
        WorkerInstance.terminated_at.is_null(False)).exists()


# -- refusals ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("broken, expected", [
    ("settings", "no worker settings for region us-east-1: an admin must enter the VPC and subnet"),
    ("subnet", "the subnet or VPC in the Worker EC2 settings for us-east-1 does not exist there"),
    ("group", "has no security group named 'cloudmover-workers' (EC2_SECURITY_GROUP)"),
    ("ami", "the worker AMI (EC2_WORKER_AMI) cannot be found in us-east-1"),
    ("profile", "the worker instance profile 'no-such-profile' (EC2_WORKER_PROFILE) does not exist"),
])
def test_ec2_refusals_reach_the_job_log_with_what_to_fix(broken, expected, direct, world):
    """Settings an admin changed after the job's pre-flight: the fleet says what to fix, in the
    job's log, and tries again after a pause."""
    from headnode.demand import JobDemand
    from headnode.models import JobLog, RegionSettings, WorkerInstance
    if broken != "settings":
        configure(REGION, world)
    if broken == "subnet":
        RegionSettings.update(subnet_id="subnet-0123456789abcdef0").execute()
    job = direct.job()
    fleet = direct.fleet(**{"group": {"security_group": "cloudmover-workers"},
                            "ami": {"ami": f"resolve:ssm:{AMI_PARAMETER}-missing"},
                            "profile": {"worker_profile": "no-such-profile"}}.get(broken, {}))
    demand = {REGION: [JobDemand(job_id=job.id, tier="express")]}
    fleet.reconcile(demand)
    fleet.reconcile(demand)   # within the pause: no second attempt
    errors = [line.message for line in JobLog.select().where((JobLog.job == job.id) & (JobLog.level == "error"))]
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"cannot launch 4 m5.xlarge worker(s) in {REGION}: ")
    assert expected in errors[0] and errors[0].endswith("(retrying in 30 s)")
    assert world.instances(REGION, node_id=fleet.settings.node_id) == [] and not WorkerInstance.select().exists()
    direct.clock.now += 31
    fleet.reconcile(demand)
    assert JobLog.select().where((JobLog.job == job.id) & (JobLog.level == "error")).count() == 2


@pytest.mark.parametrize("code, words", [
    ("InsufficientInstanceCapacity", "no spare capacity"),
    ("InstanceLimitExceeded", "ask AWS for a higher 'Running On-Demand Standard instances' vCPU quota"),
    ("VcpuLimitExceeded", "ask AWS for a higher 'Running On-Demand Standard instances' vCPU quota"),
    ("UnauthorizedOperation", "may not call run_instances in eu-west-1 (it must be allowed to run, tag and "
                              "terminate worker instances, pass the worker role of 'wp'"),
])
def test_refusals_ec2_cannot_be_made_to_give_here_are_explained(code, words):
    """The emulator never runs out of capacity or quota, nor refuses: the words for those, alone."""
    from headnode.ec2api import explain
    text = explain(code, "AWS said so", region="eu-west-1", operation="run_instances", profile="wp")
    assert words in text and text.endswith("(AWS said so)")


# -- the one rule for the instance type ------------------------------------------------------------
@pytest.mark.parametrize("codec, largest, expected", [
    ("none", 0, "m5.xlarge"), ("none", 250 * 2**20, "m5.xlarge"), ("none", 250 * 2**20 + 1, "m5.2xlarge"),
    ("none", 5 * 2**30, "m5.2xlarge"), ("none", 5 * 2**30 + 1, "m5.4xlarge"),
    ("compress", 10**6, "c5.9xlarge"), ("decompress", 512 * 2**20, "c5.9xlarge"),
    ("compress", 512 * 2**20 + 1, "c5.18xlarge"),
])
def test_instance_type(codec, largest, expected):
    from headnode.demand import JobDemand, instance_type
    assert instance_type(JobDemand(job_id=1, tier="plus", codec=codec, largest_object=largest)) == expected


@pytest.mark.parametrize("codec, counts", [("none", (4, 12, 40)), ("compress", (5, 15, 45)), ("decompress", (5, 15, 45))])
def test_workers_per_tier(codec, counts):
    from headnode.demand import JobDemand, workers_for
    assert tuple(workers_for(JobDemand(job_id=1, tier=t, codec=codec)) for t in ("express", "plus", "ultra")) == counts


@pytest.mark.parametrize("settings, refusal", [
    ({}, "FLEET=ec2 needs an SQS bus that instances can reach: set BUS_URL to sqs://"),
    ({"BUS_URL": "sqs://", "BUS_OPTIONS": {"region": "us-east-1"}},
     "FLEET=ec2 needs EC2_WORKER_PROFILE: the instance profile workers run with"),
    ({"BUS_URL": "sqs://", "EC2_WORKER_PROFILE": "p", "EC2_MAX_WORKERS_PER_REGION": 0},
     "EC2_MAX_WORKERS_PER_REGION must be positive"),
])
def test_an_ec2_fleet_without_what_it_needs_is_refused_at_start(settings, refusal, tmp_path):
    from headnode.config import load_config
    with pytest.raises(ValueError) as refused:
        load_config({"DATA_DIR": str(tmp_path), "FLEET": "ec2", **settings}, env={})
    assert str(refused.value) == refusal
