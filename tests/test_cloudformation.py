"""The head node's CloudFormation template (cloudformation/cloudmover.yaml): cfn-lint
finds nothing in it; its stack, created on the moto server over HTTP, has the
instance, the security group (22 and 9090 to the given CIDRs only), the roles and
instance profiles, and the outputs; ``cloudmover aws launch`` refuses a subnet
outside the VPC and an SSH whitelist open to the world or in a private range
with its reason, before any stack exists.

moto does not evaluate a template's Rules or AllowedPattern, so the template's
own refusals are checked here by evaluating its SshCidr pattern directly and by
cfn-lint (which validates the Rules section); the launcher's checks are the
ones that run against the emulator.
"""
from __future__ import annotations

import base64
import importlib.util
import re
import subprocess
import uuid
from pathlib import Path

import botocore.exceptions
import pytest
from cfnlint.api import ManualArgs, lint_file
from cfnlint.decode import decode

from headnode import launch as launcher
from headnode.cli import main as cloudmover
from headnode.config import load_config

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "cloudformation" / "cloudmover.yaml"
SCRIPT = ROOT / "cloudformation" / "headnode-userdata.sh"
SSH_CIDR, UI_CIDR = "81.2.69.0/24", "81.2.70.0/24"   # routable ranges (documentation ranges are not)


def load_template() -> dict:
    template, errors = decode(str(TEMPLATE))
    assert not errors, errors
    return template


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def network(moto):
    """A VPC with DNS hostnames, a subnet in it, and a key pair: the parameters of a good stack."""
    ec2 = moto.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.40.1.0/24")["Subnet"]["SubnetId"]
    key = unique("cloudmover-key")
    ec2.create_key_pair(KeyName=key)
    return {"VpcId": vpc, "SubnetId": subnet, "KeyName": key, "SshCidr": SSH_CIDR, "UiCidr": UI_CIDR,
            "BucketNames": "media-in,media-out"}


def stack_exists(cloudformation, name: str) -> bool:
    try:
        stacks = cloudformation.describe_stacks(StackName=name)["Stacks"]
    except botocore.exceptions.ClientError as exc:
        assert "does not exist" in str(exc)
        return False
    return any(stack["StackStatus"] != "DELETE_COMPLETE" for stack in stacks)


# -- the template itself --------------------------------------------------------------

def test_cfn_lint_finds_no_error_or_warning():
    matches = lint_file(TEMPLATE, config=ManualArgs(regions=["us-east-1", "eu-west-2", "ap-south-1"]))
    assert [str(match) for match in matches] == []


def test_template_carries_the_current_userdata_script():
    spec = importlib.util.spec_from_file_location("cloudformation_build", ROOT / "cloudformation" / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    assert TEMPLATE.read_text() == build.built(), "run python cloudformation/build.py"


def test_template_rules_check_the_subnet_and_the_ssh_whitelist():
    rules = load_template()["Rules"]
    subnet = rules["SubnetInVpc"]["Assertions"][0]
    assert subnet["Assert"] == {"Fn::EachMemberEquals": [{"Fn::ValueOfAll": ["AWS::EC2::Subnet::Id", "VpcId"]},
                                                         {"Ref": "VpcId"}]}
    assert "subnet must lie in the chosen VPC" in subnet["AssertDescription"]
    ssh = rules["SshNotOpenToTheWorld"]["Assertions"][0]
    assert ssh["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "SshCidr"}, "0.0.0.0/0"]}]}
    assert "0.0.0.0/0" in ssh["AssertDescription"]


@pytest.mark.parametrize("cidr, allowed", [
    ("81.2.69.0/24", True), ("81.2.69.7/32", True), ("172.32.0.0/16", True), ("192.169.0.0/16", True),
    ("11.0.0.0/8", True), ("0.0.0.0/0", False), ("0.0.0.0/8", False), ("10.0.0.0/8", False),
    ("10.200.3.0/24", False), ("172.16.0.0/12", False), ("172.31.255.0/24", False), ("192.168.0.0/16", False),
    ("192.168.1.0/24", False), ("127.0.0.1/32", False), ("81.2.69.0/33", False), ("81.2.69.0", False),
    ("not a cidr", False),
])
def test_template_and_launcher_agree_on_the_ssh_whitelist(cidr, allowed):
    parameter = load_template()["Parameters"]["SshCidr"]
    # CloudFormation matches AllowedPattern (Java regex syntax, the same here) against the whole value
    assert bool(re.fullmatch(parameter["AllowedPattern"], cidr)) is allowed
    assert (launcher.ssh_cidr_problems(cidr) == []) is allowed


@pytest.mark.parametrize("cidr", ["8.0.0.0/6", "81.2.69.7/24"])
def test_launcher_also_refuses_what_a_pattern_cannot_see(cidr):
    """A range around a private one, and host bits: the pattern passes them, the launcher does not."""
    assert launcher.ssh_cidr_problems(cidr)


def rendered_settings(script: str) -> dict:
    """The CLOUDMOVER_* settings the user data writes, expanded by bash as on the instance."""
    heredoc = re.search(r'cat >"\$CM_ETC/cloudmover.env" <<EOF\n(.*?\nEOF)\n', script, re.S).group(1)
    expanded = subprocess.run(
        ["bash", "-c", f"cat <<EOF\n{heredoc}\n"], check=True, capture_output=True, text=True,
        env={"CM_DATA": "/var/lib/cloudmover", "CM_REGION": "eu-west-2", "host": "ec2-1-2-3-4.example.com",
             "CM_WORKER_INSTANCE_PROFILE": "arn:aws:iam::123456789012:instance-profile/cloudmover/w",
             "CM_SOFTWARE": "0.1.0", "PATH": "/usr/bin:/bin"}).stdout
    settings = {}
    for line in expanded.splitlines():
        key, _, value = line.partition("=")
        settings[key] = value[1:-1] if value[:1] == value[-1:] == "'" else value   # systemd strips quotes
    return settings


def test_userdata_settings_make_a_valid_ec2_head_node_configuration():
    settings = rendered_settings(SCRIPT.read_text())
    config = load_config({}, env=settings)   # unknown keys would be ignored: check each is a real setting
    assert all(key.startswith("CLOUDMOVER_") and key[len("CLOUDMOVER_"):] in config for key in settings)
    assert (config["FLEET"], config["BUS_URL"], config["PORT"], config["HOST"], config["TLS"]) == \
        ("ec2", "sqs://", 9090, "0.0.0.0", True)
    assert config["BUS_OPTIONS"] == {"region": "eu-west-2"}
    assert config["QUEUE_PREFIX"] == "cloudmover-"   # the IAM roles allow cloudmover-* queues and topic only
    assert config["EC2_WORKER_PROFILE"].endswith("instance-profile/cloudmover/w")


def test_userdata_installs_a_service_that_restarts_and_starts_at_boot():
    unit = re.search(r'cat >"\$CM_UNIT" <<EOF\n(.*?)\nEOF\n', SCRIPT.read_text(), re.S).group(1)
    lines = unit.splitlines()
    assert "Restart=always" in lines and "WantedBy=multi-user.target" in lines
    assert "ExecStart=$CM_HOME/bin/cloudmover serve" in lines
    assert "systemctl enable --now cloudmover.service" in SCRIPT.read_text()


def test_head_node_sits_in_the_subnet_behind_its_security_group_with_a_public_address():
    properties = load_template()["Resources"]["HeadNode"]["Properties"]
    assert "SubnetId" not in properties and "SecurityGroupIds" not in properties and "SecurityGroups" not in properties
    assert properties["NetworkInterfaces"] == [{"DeviceIndex": "0", "SubnetId": {"Ref": "SubnetId"},
                                                "GroupSet": [{"Ref": "HeadNodeSecurityGroup"}],
                                                "AssociatePublicIpAddress": True}]


# -- the stack on the emulator -----------------------------------------------------------

def test_stack_on_the_emulator_has_the_head_node_its_firewall_roles_and_outputs(moto, network):
    cloudformation, ec2, iam = moto.client("cloudformation"), moto.client("ec2"), moto.client("iam")
    name = unique("CloudMover")
    stack_id = launcher.launch(cloudformation, ec2, name, dict(network, SoftwareVersion="0.1.0"))

    stack = cloudformation.describe_stacks(StackName=stack_id)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    resources = {r["LogicalResourceId"]: r for r in
                 cloudformation.list_stack_resources(StackName=stack_id)["StackResourceSummaries"]}
    assert {logical: r["ResourceType"] for logical, r in resources.items()} == {
        "HeadNode": "AWS::EC2::Instance", "HeadNodeSecurityGroup": "AWS::EC2::SecurityGroup",
        "HeadNodeRole": "AWS::IAM::Role", "HeadNodeInstanceProfile": "AWS::IAM::InstanceProfile",
        "WorkerRole": "AWS::IAM::Role", "WorkerInstanceProfile": "AWS::IAM::InstanceProfile"}

    instance_id = resources["HeadNode"]["PhysicalResourceId"]
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    assert (instance["InstanceType"], instance["KeyName"]) == ("m5.xlarge", network["KeyName"])
    assert {t["Key"]: t["Value"] for t in instance["Tags"]}["Name"] == "CloudMover"
    assert {t["Key"]: t["Value"] for t in instance["Tags"]}["cloudmover:role"] == "headnode"
    # moto places a template's instance by its SubnetId property only and ignores NetworkInterfaces,
    # which the template uses to give the head node a public address in any subnet: the placement
    # is checked in the template (test_head_node_sits_in_the_subnet_behind_its_security_group).

    group_id = resources["HeadNodeSecurityGroup"]["PhysicalResourceId"]
    group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    assert group["VpcId"] == network["VpcId"]
    ingress = sorted((p["IpProtocol"], p["FromPort"], p["ToPort"], tuple(r["CidrIp"] for r in p["IpRanges"]),
                      len(p["Ipv6Ranges"]) + len(p["UserIdGroupPairs"]) + len(p["PrefixListIds"]))
                     for p in group["IpPermissions"])
    assert ingress == [("tcp", 22, 22, (SSH_CIDR,), 0), ("tcp", 9090, 9090, (UI_CIDR,), 0)]

    profiles = {}
    for logical in ("HeadNodeInstanceProfile", "WorkerInstanceProfile"):
        profile = iam.get_instance_profile(InstanceProfileName=resources[logical]["PhysicalResourceId"])
        profiles[logical] = profile["InstanceProfile"]
        assert profile["InstanceProfile"]["Path"] == "/cloudmover/"
    assert instance["IamInstanceProfile"]["Arn"] == profiles["HeadNodeInstanceProfile"]["Arn"]
    for role_logical, profile_logical, policy in (("HeadNodeRole", "HeadNodeInstanceProfile", "cloudmover-headnode"),
                                                  ("WorkerRole", "WorkerInstanceProfile", "cloudmover-worker")):
        role_name = resources[role_logical]["PhysicalResourceId"]
        role = iam.get_role(RoleName=role_name)["Role"]
        assert role["Path"] == "/cloudmover/"
        assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
        assert iam.list_role_policies(RoleName=role_name)["PolicyNames"] == [policy]
        assert [r["RoleName"] for r in profiles[profile_logical]["Roles"]] == [role_name]

    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    dns = instance["PublicDnsName"]
    assert dns and outputs["UiUrl"] == f"https://{dns}:9090"
    assert outputs["UiUrl"].startswith("https://") and outputs["UiUrl"].endswith(":9090")
    assert outputs["InstanceId"] == instance_id
    assert "user admin" in outputs["SignIn"] and f"password is the instance id, {instance_id}" in outputs["SignIn"]
    assert outputs["WorkerInstanceProfileArn"] == profiles["WorkerInstanceProfile"]["Arn"]

    user_data = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")["UserData"]["Value"]
    script = base64.b64decode(user_data).decode()
    assert script.startswith("#!/bin/bash\n")
    assert f"CM_STACK_NAME='{name}'" in script and "CM_SOFTWARE='0.1.0'" in script
    assert f"CM_WORKER_INSTANCE_PROFILE='{profiles['WorkerInstanceProfile']['Arn']}'" in script
    assert SCRIPT.read_text() in script
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)   # the whole user data parses


# -- refused before any stack exists ---------------------------------------------------------

def _other_vpc_subnet(ec2, params):
    vpc = ec2.create_vpc(CidrBlock="10.41.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.41.1.0/24")["Subnet"]["SubnetId"]
    return dict(params, SubnetId=subnet), f"subnet {subnet} lies in VPC {vpc}, not in {params['VpcId']}"


def _no_dns_names(ec2, params):
    ec2.modify_vpc_attribute(VpcId=params["VpcId"], EnableDnsHostnames={"Value": False})
    return params, "gives instances no public DNS names"


REFUSALS = {
    "subnet outside the VPC": _other_vpc_subnet,
    "SSH open to the world": lambda ec2, p: (dict(p, SshCidr="0.0.0.0/0"),
                                             "would open SSH (port 22) to the whole internet"),
    "SSH from 10/8": lambda ec2, p: (dict(p, SshCidr="10.1.0.0/16"), "is in a private range (10.0.0.0/8)"),
    "SSH from 172.16/12": lambda ec2, p: (dict(p, SshCidr="172.20.0.0/16"), "is in a private range (172.16.0.0/12)"),
    "SSH from 192.168/16": lambda ec2, p: (dict(p, SshCidr="192.168.1.0/24"),
                                           "is in a private range (192.168.0.0/16)"),
    "SSH with host bits": lambda ec2, p: (dict(p, SshCidr="81.2.69.7/24"), "has host bits set: write 81.2.69.0/24"),
    "UI not a CIDR": lambda ec2, p: (dict(p, UiCidr="everyone"), "UiCidr 'everyone' is not an IPv4 CIDR block"),
    "no such subnet": lambda ec2, p: (dict(p, SubnetId="subnet-0123456789abcdef0"),
                                      "subnet subnet-0123456789abcdef0 does not exist"),
    "no such key pair": lambda ec2, p: (dict(p, KeyName="nobody-has-this-key"),
                                        "key pair 'nobody-has-this-key' does not exist"),
    "wildcard bucket": lambda ec2, p: (dict(p, BucketNames="media-in,*"), "'*' is not an S3 bucket name"),
    "VPC without DNS names": _no_dns_names,
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_launcher_refuses_with_the_reason_and_creates_no_stack(moto, network, case):
    cloudformation, ec2 = moto.client("cloudformation"), moto.client("ec2")
    params, reason = REFUSALS[case](ec2, network)
    name = unique("CloudMover")
    with pytest.raises(launcher.LaunchRefused) as refused:
        launcher.launch(cloudformation, ec2, name, params)
    assert any(reason in problem for problem in refused.value.problems), refused.value.problems
    assert len(refused.value.problems) == 1, refused.value.problems
    assert not stack_exists(cloudformation, name)


@pytest.fixture
def aws_env(moto, monkeypatch):
    """The environment a user's `cloudmover aws launch` reads, pointed at the moto server."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", moto.region)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)


def cli_args(name: str, params: dict) -> list[str]:
    return ["aws", "launch", "--stack-name", name, "--vpc", params["VpcId"], "--subnet", params["SubnetId"],
            "--key-name", params["KeyName"], "--ssh-cidr", params["SshCidr"], "--ui-cidr", params["UiCidr"],
            "--buckets", params["BucketNames"]]


def test_cli_refuses_an_open_ssh_whitelist(moto, network, aws_env, capsys):
    name = unique("CloudMover")
    assert cloudmover(cli_args(name, dict(network, SshCidr="0.0.0.0/0"))) == 2
    err = capsys.readouterr().err
    assert f"stack '{name}' not created" in err and "open SSH (port 22) to the whole internet" in err
    assert not stack_exists(moto.client("cloudformation"), name)


def test_cli_launches_and_prints_the_outputs(moto, network, aws_env, capsys):
    name = unique("CloudMover")
    assert cloudmover(cli_args(name, network) + ["--wait", "--instance-type", "m5.large"]) == 0
    out = capsys.readouterr().out
    ui_url = re.search(r"^UiUrl: (\S+)$", out, re.M).group(1)
    assert ui_url.startswith("https://") and ui_url.endswith(":9090")
    instance_id = re.search(r"^InstanceId: (i-\w+)$", out, re.M).group(1)
    instance = moto.client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    assert instance["InstanceType"] == "m5.large"


def test_cli_says_where_the_template_is_when_it_is_missing(network, aws_env, capsys, tmp_path):
    assert cloudmover(cli_args(unique("CloudMover"), network) + ["--template", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read the template" in capsys.readouterr().err
