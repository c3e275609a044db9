"""Launching a head node in AWS: ``cloudmover aws launch`` creates the stack of
``cloudformation/cloudmover.yaml`` after checking its parameters.

CloudFormation itself refuses a subnet outside the VPC, an SSH whitelist open
to the world or in a private range (the template's Rules and AllowedPattern),
but only after the console round trip, and an emulator may not evaluate Rules
at all. ``check_parameters`` makes the same checks (and a few the template
cannot express: host bits, overlapping ranges, DNS names for the UI address)
against EC2 first, so a mistake is refused with its reason before CreateStack.
"""
from __future__ import annotations

import ipaddress
import re
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1] / "cloudformation" / "cloudmover.yaml"
PRIVATE_RANGES = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
UNROUTABLE_RANGES = tuple(ipaddress.ip_network(n) for n in ("0.0.0.0/8", "127.0.0.0/8"))
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
REQUIRED = ("VpcId", "SubnetId", "KeyName", "SshCidr", "UiCidr", "BucketNames")


class LaunchRefused(Exception):
    """The stack was not created; ``problems`` says why, one line each."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def check_parameters(ec2, params: dict) -> list[str]:
    """What is wrong with the stack parameters ``params`` (template names), as
    sentences an operator can act on; empty when the stack may be created."""
    problems = [f"{name} is required" for name in REQUIRED if not params.get(name)]
    if params.get("SshCidr"):
        problems += ssh_cidr_problems(params["SshCidr"])
    if params.get("UiCidr"):
        problems += _cidr_syntax("UiCidr", params["UiCidr"])
    if params.get("BucketNames"):
        problems += bucket_problems(params["BucketNames"])
    if params.get("VpcId") and params.get("SubnetId"):
        problems += network_problems(ec2, params["VpcId"], params["SubnetId"])
    if params.get("KeyName"):
        problems += _key_pair_problems(ec2, params["KeyName"])
    return problems


def ssh_cidr_problems(cidr: str) -> list[str]:
    syntax = _cidr_syntax("SshCidr", cidr)
    if syntax:
        return syntax
    network = ipaddress.ip_network(cidr)
    if network.prefixlen == 0:
        return [f"SshCidr {cidr} would open SSH (port 22) to the whole internet: give the public address "
                f"range of your office or VPN, e.g. 203.0.113.0/24"]
    private = [str(p) for p in PRIVATE_RANGES if network.overlaps(p)]
    if private:
        return [f"SshCidr {cidr} is in a private range ({', '.join(private)}), which never reaches the "
                f"instance's public address: give the public address your SSH connection comes from"]
    if any(network.overlaps(r) for r in UNROUTABLE_RANGES):
        return [f"SshCidr {cidr} is not a routable public range (it overlaps 0.0.0.0/8 or 127.0.0.0/8): "
                f"give the public address range your SSH connection comes from"]
    return []


def _cidr_syntax(name: str, cidr: str) -> list[str]:
    try:
        network = ipaddress.IPv4Network(cidr, strict=False)
    except ValueError:
        return [f"{name} {cidr!r} is not an IPv4 CIDR block such as 203.0.113.0/24"]
    if "/" not in cidr:
        return [f"{name} {cidr!r} needs a prefix length: {cidr}/32 for this one address"]
    if str(network) != cidr:
        return [f"{name} {cidr} has host bits set: write {network} (or {cidr.split('/')[0]}/32 for one address)"]
    return []


def bucket_problems(buckets: str) -> list[str]:
    names = [name.strip() for name in buckets.split(",")]
    wrong = [name for name in names if not BUCKET_NAME.match(name)]
    if wrong:
        return [f"BucketNames: {', '.join(repr(n) for n in wrong)} is not an S3 bucket name (3-63 lower-case "
                f"letters, digits, dots and hyphens, no wildcards): the roles get exactly the buckets named"]
    return []


def network_problems(ec2, vpc_id: str, subnet_id: str) -> list[str]:
    """The VPC and subnet exist, the subnet lies in the VPC, and the VPC gives
    instances public DNS names (the UI address is one)."""
    region = ec2.meta.region_name
    vpc = _describe(ec2.describe_vpcs, "Vpcs", VpcIds=[vpc_id])
    if vpc is None:
        return [f"VPC {vpc_id} does not exist in region {region}: pick one from "
                f"`aws ec2 describe-vpcs --region {region}` (or launch in the VPC's region)"]
    subnet = _describe(ec2.describe_subnets, "Subnets", SubnetIds=[subnet_id])
    if subnet is None:
        return [f"subnet {subnet_id} does not exist in region {region}: pick one of VPC {vpc_id} from "
                f"`aws ec2 describe-subnets --filters Name=vpc-id,Values={vpc_id}`"]
    if subnet["VpcId"] != vpc_id:
        return [f"subnet {subnet_id} lies in VPC {subnet['VpcId']}, not in {vpc_id}: pick a subnet of {vpc_id} "
                f"(`aws ec2 describe-subnets --filters Name=vpc-id,Values={vpc_id}`)"]
    hostnames = ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute="enableDnsHostnames")
    if not hostnames["EnableDnsHostnames"]["Value"]:
        return [f"VPC {vpc_id} gives instances no public DNS names (DNS hostnames are off), so the UI address "
                f"would be empty: `aws ec2 modify-vpc-attribute --vpc-id {vpc_id} --enable-dns-hostnames`"]
    return []


def _key_pair_problems(ec2, key_name: str) -> list[str]:
    if _describe(ec2.describe_key_pairs, "KeyPairs", KeyNames=[key_name]) is None:
        region = ec2.meta.region_name
        return [f"key pair {key_name!r} does not exist in region {region}: create it (EC2 console, Key Pairs, "
                f"or `aws ec2 create-key-pair --key-name {key_name}`) or name an existing one"]
    return []


def _describe(call, field: str, **ids):
    """The one item a Describe call returns for ``ids``, or None when AWS says it does not exist."""
    import botocore.exceptions

    try:
        items = call(**ids)[field]
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code", "").endswith((".NotFound", ".Malformed")):
            return None
        raise
    return items[0] if items else None


def launch(cloudformation, ec2, stack_name: str, params: dict, *, template_body: str | None = None) -> str:
    """Check ``params`` and create the stack; its id. Raises ``LaunchRefused``
    (nothing created) when a check fails or CloudFormation refuses the stack."""
    import botocore.exceptions

    problems = check_parameters(ec2, params)
    if problems:
        raise LaunchRefused(problems)
    body = template_body if template_body is not None else TEMPLATE.read_text()
    try:
        created = cloudformation.create_stack(
            StackName=stack_name, TemplateBody=body, Capabilities=["CAPABILITY_IAM"],
            Parameters=[{"ParameterKey": key, "ParameterValue": str(value)} for key, value in params.items()
                        if value is not None])
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        raise LaunchRefused([f"CloudFormation refused stack {stack_name!r}: {error.get('Code')}: "
                             f"{error.get('Message')}"]) from None
    return created["StackId"]


def outputs(cloudformation, stack_id: str, *, wait: bool) -> dict:
    """The stack's outputs; with ``wait``, once it is complete (the head node answers)."""
    if wait:
        cloudformation.get_waiter("stack_create_complete").wait(StackName=stack_id)
    stack = cloudformation.describe_stacks(StackName=stack_id)["Stacks"][0]
    return {item["OutputKey"]: item["OutputValue"] for item in stack.get("Outputs", [])}


# -- the command --------------------------------------------------------------------------

def add_parser(commands) -> None:
    """``cloudmover aws launch``: its arguments are the template's parameters."""
    aws = commands.add_parser("aws", help="run CloudMover in AWS")
    verbs = aws.add_subparsers(dest="aws_command", required=True)
    cmd = verbs.add_parser("launch", help="check the parameters, then create the head node's CloudFormation stack",
                           description="Create a CloudMover head node stack (docs/aws.md). AWS credentials and "
                                       "region come from the usual places (AWS_PROFILE, AWS_DEFAULT_REGION, …).")
    cmd.add_argument("--stack-name", default="CloudMover")
    cmd.add_argument("--vpc", required=True, help="VPC id (vpc-…)")
    cmd.add_argument("--subnet", required=True, help="subnet id (subnet-…) in that VPC")
    cmd.add_argument("--key-name", required=True, help="EC2 key pair for SSH")
    cmd.add_argument("--ssh-cidr", required=True, help="public CIDR allowed on SSH (port 22), e.g. 203.0.113.0/24")
    cmd.add_argument("--ui-cidr", required=True, help="CIDR allowed on the UI (HTTPS, port 9090)")
    cmd.add_argument("--buckets", required=True, help="comma-separated S3 buckets the roles may use")
    cmd.add_argument("--instance-name", default=None, help="Name tag (default CloudMover)")
    cmd.add_argument("--instance-type", default=None, help="default m5.xlarge")
    cmd.add_argument("--software-version", default=None, help="CloudMover version or pip requirement to install")
    cmd.add_argument("--region", default=None, help="AWS region (default: your AWS configuration's)")
    cmd.add_argument("--template", default=str(TEMPLATE), help="the CloudFormation template")
    cmd.add_argument("--wait", action="store_true", help="wait until the head node answers, then print the outputs")
    cmd.set_defaults(run=run)


def run(args) -> int:
    import boto3

    params = {"VpcId": args.vpc, "SubnetId": args.subnet, "KeyName": args.key_name, "SshCidr": args.ssh_cidr,
              "UiCidr": args.ui_cidr, "BucketNames": args.buckets, "InstanceName": args.instance_name,
              "InstanceType": args.instance_type, "SoftwareVersion": args.software_version}
    try:
        body = Path(args.template).read_text()
    except OSError as exc:
        print(f"cloudmover: cannot read the template {args.template}: {exc.strerror}; pass --template "
              f"cloudformation/cloudmover.yaml from the CloudMover source", file=sys.stderr)
        return 2
    session = boto3.session.Session(region_name=args.region)
    cloudformation, ec2 = session.client("cloudformation"), session.client("ec2")
    try:
        stack_id = launch(cloudformation, ec2, args.stack_name, params, template_body=body)
    except LaunchRefused as refused:
        print(f"cloudmover: stack {args.stack_name!r} not created:", file=sys.stderr)
        for problem in refused.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    print(f"creating stack {stack_id}")
    if not args.wait:
        print(f"follow it with: aws cloudformation describe-stacks --stack-name {args.stack_name}")
        return 0
    for key, value in outputs(cloudformation, stack_id, wait=True).items():
        print(f"{key}: {value}")
    return 0
