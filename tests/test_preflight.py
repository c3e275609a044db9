"""Pre-flight checks (issue 5, acceptance 6) against the moto server over HTTP
(EC2, IAM, STS) and SeaweedFS buckets: each failure stops the job before it is
stored, so before any instance starts, with its own message; a fully set-up
region passes.

moto answers neither Service Quotas ``GetServiceQuota`` for EC2 (it knows only
VPC quotas; for EC2 it says NoSuchResourceException) nor IAM
``SimulatePrincipalPolicy``; ``support.awsstub`` answers those two with the
response shapes AWS gives, from values the test sets, and passes everything
else to moto. The quota arithmetic and the PassRole decision are tested
through those answers; no project code is replaced."""
from __future__ import annotations

import json
import uuid

import pytest

from conftest import bus_config
from headnode import models, preflight
from headnode.config import load_config
from headnode.ec2api import AwsClients
from headnode.models import Job, RegionSettings
from pipeline import errors
from pipeline.store import StoreSpec
from support.awsstub import AwsStub
from support.waiting import wait_for

REGION = "us-east-1"
ALL_CHECKS = ["region_settings", "network", "public_ip", "worker_profile", "pass_role",
              "source_bucket", "destination_bucket", "ec2_quota"]
STANDARD = ("ec2", "L-1216C47A")


@pytest.fixture
def region(moto):
    """A VPC with a public subnet, another VPC, a private subnet, and the worker role's instance profile."""
    ec2, iam = moto.client("ec2"), moto.client("iam")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    other_vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    public = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
    ec2.modify_subnet_attribute(SubnetId=public, MapPublicIpOnLaunch={"Value": True})
    private = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.2.0/24")["Subnet"]["SubnetId"]
    tag = uuid.uuid4().hex[:8]
    role = iam.create_role(RoleName=f"cm-worker-{tag}", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))["Role"]
    profile = f"cm-worker-{tag}"
    iam.create_instance_profile(InstanceProfileName=profile)
    iam.add_role_to_instance_profile(InstanceProfileName=profile, RoleName=role["RoleName"])
    empty_profile = f"cm-empty-{tag}"
    iam.create_instance_profile(InstanceProfileName=empty_profile)
    return {"vpc": vpc, "other_vpc": other_vpc, "public_subnet": public, "private_subnet": private,
            "profile": profile, "empty_profile": empty_profile, "role_arn": role["Arn"]}


@pytest.fixture
def stub(moto):
    with AwsStub(moto.endpoint_url, quotas={STANDARD: 64}) as server:
        yield server


@pytest.fixture
def database(tmp_path):
    database = models.connect(str(tmp_path / "preflight.db"))
    yield database
    database.close()


def ec2_config(tmp_path, moto, endpoint_url: str, **overrides) -> dict:
    return load_config({"DATA_DIR": str(tmp_path / "node"), "FLEET": "ec2", "EC2_ENDPOINT_URL": endpoint_url,
                        "EC2_WORKER_PROFILE": overrides.pop("profile"), **bus_config("sqs", tmp_path, moto),
                        **overrides}, env={})


def job_between(seaweed, source: str, destination: str, **options) -> preflight.JobSpec:
    store = lambda bucket: StoreSpec("s3", bucket, REGION, seaweed.endpoint_url)
    return preflight.JobSpec(store(source), store(destination), **options)


def by_name(checks: list[preflight.Check]) -> dict[str, preflight.Check]:
    return {check.name: check for check in checks}


def test_a_fully_set_up_region_passes(region, stub, database, buckets, s3_env, moto, tmp_path):
    RegionSettings.create(region=REGION, vpc_id=region["vpc"], subnet_id=region["public_subnet"],
                          head_node_path="public")
    config = ec2_config(tmp_path, moto, stub.endpoint_url, profile=region["profile"])
    checks = preflight.run_preflight(job_between(s3_env, *buckets), config=config,
                                     clients=AwsClients(stub.endpoint_url))

    assert [c.name for c in checks] == ALL_CHECKS
    assert all(c.ok and not c.warning for c in checks), checks
    quota = by_name(checks)["ec2_quota"].message
    assert "allows 64 vCPUs" in quota and "4 × m5.xlarge = 16" in quota
    assert region["role_arn"] in by_name(checks)["pass_role"].message
    assert stub.calls == {"GetServiceQuota": 1, "SimulatePrincipalPolicy": 1}


FAILURES = {
    "missing region settings": ("region_settings", "has no worker settings"),
    "missing VPC": ("network", "VPC vpc-0123456789abcdef0 does not exist"),
    "subnet not in VPC": ("network", "lies in VPC"),
    "no public IP on a public path": ("public_ip", "does not assign public IPv4 addresses"),
    "missing worker profile": ("worker_profile", "does not exist"),
    "profile without a role": ("worker_profile", "holds no role"),
    "role may not be passed": ("pass_role", "may not pass the worker role"),
    "unreachable bucket": ("source_bucket", "the bucket does not exist"),
    "quota too low": ("ec2_quota", "request an increase to at least 16"),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_each_failure_says_what_to_fix(case, region, stub, database, buckets, s3_env, moto, tmp_path):
    source, destination = buckets
    vpc, subnet, path, profile = region["vpc"], region["public_subnet"], "public", region["profile"]
    if case == "missing VPC":
        vpc = "vpc-0123456789abcdef0"
    elif case == "subnet not in VPC":
        vpc = region["other_vpc"]
    elif case == "no public IP on a public path":
        subnet = region["private_subnet"]
    elif case == "missing worker profile":
        profile = "no-such-profile"
    elif case == "profile without a role":
        profile = region["empty_profile"]
    elif case == "role may not be passed":
        stub.pass_role = "implicitDeny"
    elif case == "unreachable bucket":
        source = f"no-such-bucket-{uuid.uuid4().hex[:8]}"
    elif case == "quota too low":
        stub.quotas[STANDARD] = 8
    if case != "missing region settings":
        RegionSettings.create(region=REGION, vpc_id=vpc, subnet_id=subnet, head_node_path=path)
    config = ec2_config(tmp_path, moto, stub.endpoint_url, profile=profile)

    checks = by_name(preflight.run_preflight(job_between(s3_env, source, destination), config=config,
                                             clients=AwsClients(stub.endpoint_url)))

    name, expected = FAILURES[case]
    failed = [c.name for c in checks.values() if not c.ok]
    assert failed == [name], checks
    assert expected in checks[name].message
    with pytest.raises(preflight.PreflightFailed) as refused:
        preflight.require(job_between(s3_env, source, destination), config=config,
                          clients=AwsClients(stub.endpoint_url))
    assert checks[name].message in str(refused.value)
    assert refused.value.code == "preflight_failed"
    assert [c["name"] for c in refused.value.as_dicts() if not c["ok"]] == [name]


def test_a_private_path_needs_no_public_ip(region, stub, database, buckets, s3_env, moto, tmp_path):
    RegionSettings.create(region=REGION, vpc_id=region["vpc"], subnet_id=region["private_subnet"],
                          head_node_path="private")
    config = ec2_config(tmp_path, moto, stub.endpoint_url, profile=region["profile"])
    checks = preflight.run_preflight(job_between(s3_env, *buckets), config=config,
                                     clients=AwsClients(stub.endpoint_url))
    assert "public_ip" not in by_name(checks) and all(c.ok for c in checks), checks


@pytest.mark.parametrize("tier, codec, largest, quota, needed", [
    ("plus", "none", 0, 47, "12 × m5.xlarge (4 vCPUs each) = 48"),
    ("ultra", "none", 300 << 20, 319, "40 × m5.2xlarge (8 vCPUs each) = 320"),
    ("express", "compress", 0, 179, "5 × c5.9xlarge (36 vCPUs each) = 180"),
])
def test_the_quota_counts_the_tier_and_instance_type(tier, codec, largest, quota, needed, region, stub, database,
                                                     buckets, s3_env, moto, tmp_path):
    RegionSettings.create(region=REGION, vpc_id=region["vpc"], subnet_id=region["public_subnet"],
                          head_node_path="public")
    config = ec2_config(tmp_path, moto, stub.endpoint_url, profile=region["profile"])
    job = job_between(s3_env, *buckets, tier=tier, codec=codec, largest_object=largest)
    clients = AwsClients(stub.endpoint_url)

    stub.quotas[STANDARD] = quota
    refused = by_name(preflight.run_preflight(job, config=config, clients=clients))["ec2_quota"]
    assert not refused.ok and needed in refused.message and f"is {quota} vCPUs" in refused.message
    stub.quotas[STANDARD] = quota + 1
    assert by_name(preflight.run_preflight(job, config=config, clients=clients))["ec2_quota"].ok


@pytest.mark.parametrize("case, name, expected", [
    ("quota not readable", "ec2_quota", "Could not read the EC2 vCPU quota"),
    ("simulation denied", "pass_role", "Could not verify that the head node may pass"),
])
def test_what_cannot_be_verified_is_a_warning_not_a_failure(case, name, expected, region, stub, database, buckets,
                                                            s3_env, moto, tmp_path):
    RegionSettings.create(region=REGION, vpc_id=region["vpc"], subnet_id=region["public_subnet"],
                          head_node_path="public")
    if case == "quota not readable":
        stub.quotas.clear()   # AWS's (and moto's) NoSuchResourceException
    else:
        stub.pass_role = "AccessDenied"
    config = ec2_config(tmp_path, moto, stub.endpoint_url, profile=region["profile"])
    checks = by_name(preflight.run_preflight(job_between(s3_env, *buckets), config=config,
                                             clients=AwsClients(stub.endpoint_url)))
    assert all(c.ok for c in checks.values()), checks
    assert [c.name for c in checks.values() if c.warning] == [name]
    assert expected in checks[name].message


def test_the_local_fleet_checks_only_the_buckets(database, buckets, s3_env, tmp_path):
    config = load_config({"DATA_DIR": str(tmp_path / "node")}, env={})
    source, destination = buckets
    nowhere = lambda service, region: pytest.fail(f"the local fleet asked AWS {service} in {region}")
    passed = preflight.run_preflight(job_between(s3_env, source, destination), config=config, clients=nowhere)
    assert [(c.name, c.ok) for c in passed] == [("source_bucket", True), ("destination_bucket", True)]
    refused = preflight.run_preflight(job_between(s3_env, source, "no-such-bucket-cm"), config=config,
                                      clients=nowhere)
    assert [(c.name, c.ok) for c in refused] == [("source_bucket", True), ("destination_bucket", False)]
    assert "s3://no-such-bucket-cm/" in refused[1].message and "does not exist" in refused[1].message


def test_a_refused_job_is_never_stored_and_starts_no_instance(region, stub, buckets, s3_env, moto, head_node, api,
                                                             tmp_path):
    source, destination = buckets
    s3_env.client().put_object(Bucket=source, Key="in/a", Body=b"a")
    ami = moto.client("ec2").describe_images()["Images"][0]["ImageId"]
    node = head_node(FLEET="ec2", EC2_ENDPOINT_URL=stub.endpoint_url, EC2_WORKER_PROFILE=region["profile"],
                     EC2_WORKER_AMI=ami, HEAD_NODE_PRIVATE_IP="10.20.1.5", HEAD_NODE_PUBLIC_IP="203.0.113.5",
                     SOFTWARE_VERSION="0.0.0", ENDPOINT_URL=s3_env.endpoint_url, **bus_config("sqs", tmp_path, moto))
    rest = api(node)
    RegionSettings.create(region=REGION, vpc_id=region["vpc"], subnet_id=region["private_subnet"],
                          head_node_path="public")
    stub.quotas[STANDARD] = 8
    job = {"source": f"s3://{source}/in/", "destination": f"s3://{destination}/out/"}

    with pytest.raises(preflight.PreflightFailed) as refused:
        node.service.create(**job)
    assert {c.name for c in refused.value.checks if not c.ok} == {"public_ip", "ec2_quota"}
    answer = rest.post("/jobs", json={**job, "endpoint_url": s3_env.endpoint_url})
    assert answer.status_code == 422 and answer.json()["code"] == "preflight_failed"
    for check in refused.value.checks:
        assert (check.message in answer.json()["message"]) is (not check.ok)
    assert {c["name"] for c in answer.json()["checks"] if not c["ok"]} == {"public_ip", "ec2_quota"}
    checked = rest.post("/jobs/preflight", json=job)   # the same checks, asked before submitting
    assert checked.status_code == 200
    assert {c["name"] for c in checked.json() if not c["ok"]} == {"public_ip", "ec2_quota"}
    assert Job.select().count() == 0

    # set up right, the same job is stored and its workers launch in the region's subnet
    RegionSettings.update(subnet_id=region["public_subnet"]).execute()
    stub.quotas[STANDARD] = 16
    created = node.service.create(**job)
    ec2 = moto.client("ec2")

    def launched():
        found = ec2.describe_instances(Filters=[{"Name": "subnet-id", "Values": [region["public_subnet"]]},
                                                {"Name": "instance-state-name", "Values": ["pending", "running"]}])
        return [i for r in found["Reservations"] for i in r["Instances"]]
    instances = wait_for(lambda: len(launched()) >= 4 and launched(), timeout=60, what="the job's workers")
    jobs_tags = {t["Value"] for i in instances for t in i["Tags"] if t["Key"] == "cloudmover:jobs"}
    assert len(instances) == 4 and jobs_tags == {str(created.id)}
    assert Job.select().count() == 1


def test_a_local_destination_is_checked_without_being_made(database, tmp_path, s3_env, buckets, head_node):
    config = load_config({"DATA_DIR": str(tmp_path / "node")}, env={})
    source = StoreSpec("s3", buckets[0], REGION, s3_env.endpoint_url)
    (tmp_path / "a-file").write_bytes(b"in the way")
    local = lambda path: preflight.JobSpec(source, StoreSpec("local", str(path)))

    fresh = preflight.run_preflight(local(tmp_path / "new" / "dir"), config=config, clients=None)
    assert all(c.ok for c in fresh) and not (tmp_path / "new").exists()
    blocked = by_name(preflight.run_preflight(local(tmp_path / "a-file" / "dir"), config=config, clients=None))
    assert not blocked["destination_bucket"].ok and "is not a directory" in blocked["destination_bucket"].message

    node = head_node(FLEET="none", ENDPOINT_URL=s3_env.endpoint_url)
    with pytest.raises(errors.BadLocation, match="holds no objects"):
        node.service.create(source=f"s3://{buckets[0]}/nothing/", destination=str(tmp_path / "copy"))
    assert not (tmp_path / "copy").exists()


@pytest.mark.parametrize("caller, principal", [
    ("arn:aws:sts::123456789012:assumed-role/HeadNodeRole/i-0abc", "arn:aws:iam::123456789012:role/HeadNodeRole"),
    ("arn:aws-cn:sts::123456789012:assumed-role/HeadNode/session", "arn:aws-cn:iam::123456789012:role/HeadNode"),
    ("arn:aws:iam::123456789012:user/operator", "arn:aws:iam::123456789012:user/operator"),
])
def test_the_simulated_principal_is_the_role_behind_the_session(caller, principal):
    assert preflight.principal_arn(caller) == principal


def test_the_simulated_role_carries_its_path(moto):
    """The session ARN drops the role's path (/cloudmover/ in the template); the simulator needs it."""
    iam = moto.client("iam")
    name = f"cm-head-{uuid.uuid4().hex[:8]}"
    made = iam.create_role(RoleName=name, Path="/cloudmover/", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    assert made.endswith(f":role/cloudmover/{name}")
    assert preflight._full_role_arn(preflight.principal_arn(
        f"arn:aws:sts::123456789012:assumed-role/{name}/i-0abc"), iam) == made
    unknown = "arn:aws:iam::123456789012:role/not-there"
    assert preflight._full_role_arn(unknown, iam) == unknown   # unreadable: the simulator will say so
