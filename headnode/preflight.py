"""Pre-flight checks: what must hold before a job's workers start, each failure
said in words an operator can act on.

Job creation (``JobService.create``) runs them before the job is stored, so a
job that fails one never reaches the planner or the fleet (no instance starts)
and the caller gets ``PreflightFailed`` carrying every check; ``checks_as_dicts``
is the same for an API answer. With ``FLEET=ec2`` the checks are, in order:

  region_settings     the job's worker region has a VPC, subnet and path (RegionSettings)
  network             the VPC and the subnet exist, and the subnet lies in the VPC
  public_ip           the subnet assigns public IPv4 addresses (only when the path is public)
  worker_profile      the instance profile EC2_WORKER_PROFILE exists and holds a role
  pass_role           the head node may pass that role (iam:SimulatePrincipalPolicy)
  source_bucket       the head node reaches the source (HeadBucket, through the pipeline store)
  destination_bucket  … and the destination
  ec2_quota           the vCPU quota "Running On-Demand Standard instances" (L-1216C47A) of the
                      region covers the tier's workers × the vCPUs of their instance type

Any other fleet runs only the two bucket checks (a local destination
directory is checked for being makeable, not made: a refused job leaves
nothing behind). ``JobService.preflight_checks`` runs them for a job as a user
writes it, without creating it (``POST /api/v1/jobs/preflight``). A check that cannot be
verified (the head node may not simulate its own policy, the quota cannot be
read) passes with ``warning`` set rather than refusing a job that may well
run; the job's log keeps the warning. The quota check counts the tier's
instance type for a job of small files: a job holding larger files gets larger
instances once its planner has seen them (``headnode.demand``). botocore is
imported inside the AWS checks: a head node with local workers never loads it.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable


from pipeline import errors
from pipeline.store import StoreSpec, open_store
from headnode.demand import JobDemand, instance_type, workers_for
from headnode.models import RegionSettings
from headnode.regions import job_region

STANDARD_QUOTA = ("ec2", "L-1216C47A")          # Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances
STANDARD_FAMILIES = set("acdhimrtz")
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthFailure",
           "UnrecognizedClientException", "InvalidClientTokenId"}


@dataclass(frozen=True)
class JobSpec:
    """What pre-flight needs of a job: its stores, tier and image codec mode."""
    source: StoreSpec
    destination: StoreSpec
    tier: str = "express"
    codec: str = "none"
    largest_object: int = 0          # bytes, when known (it sizes the instance type)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    message: str                     # what holds, or what to fix
    warning: bool = False            # passed without being verified

    def as_dict(self) -> dict:
        return asdict(self)


class PreflightFailed(errors.PermanentError):
    """A job refused before it was stored: ``checks`` holds every check, passed or not."""

    code = "preflight_failed"

    def __init__(self, checks: list[Check]):
        self.checks = list(checks)
        failed = [check.message for check in self.checks if not check.ok]
        super().__init__(f"the job cannot start: {len(failed)} pre-flight check(s) failed. " + " ".join(failed))

    def as_dicts(self) -> list[dict]:
        return [check.as_dict() for check in self.checks]


Clients = Callable[[str, str], object]   # (service, region) -> a boto3 client


def run_preflight(job: JobSpec, *, config: dict, clients: Clients, stores=None) -> list[Check]:
    """Every check that applies to ``job`` under ``config`` (see the module's docstring).

    ``clients(service, region)`` gives boto3 clients (EC2, IAM, STS, Service Quotas), used only
    with FLEET=ec2; ``stores`` opens the pipeline stores (a ``StoreCache``; default: opened here).
    """
    buckets = [_bucket_check("source", job.source, stores, write=False),
               _bucket_check("destination", job.destination, stores, write=True)]
    if config["FLEET"] != "ec2":
        return buckets
    region = job_region(job.source, job.destination, codec=job.codec, default=config["REGION"])
    checks = _region_checks(region, clients) + _role_checks(config["EC2_WORKER_PROFILE"], clients, region=region)
    checks += buckets
    if region != "local":
        checks.append(_quota_check(job, region, clients, cap=int(config["EC2_MAX_WORKERS_PER_REGION"])))
    return checks


def require(job: JobSpec, *, config: dict, clients: Clients, stores=None) -> list[Check]:
    """The checks, when all pass (warnings included); ``PreflightFailed`` otherwise."""
    checks = run_preflight(job, config=config, clients=clients, stores=stores)
    if not all(check.ok for check in checks):
        raise PreflightFailed(checks)
    return checks


def checks_as_dicts(job: JobSpec, *, config: dict, clients: Clients, stores=None) -> list[dict]:
    """``run_preflight`` as JSON-ready dicts: name, ok, message, warning."""
    return [check.as_dict() for check in run_preflight(job, config=config, clients=clients, stores=stores)]


# -- the region's network -------------------------------------------------------------------
def _region_checks(region: str, clients: Clients) -> list[Check]:
    if region == "local":
        return [Check("region_settings", False, "EC2 workers cannot read or write a directory on the head node: "
                                                "copy between buckets, or run this job where FLEET=local.")]
    settings = RegionSettings.get_or_none(RegionSettings.region == region)
    if settings is None:
        return [Check("region_settings", False,
                      f"Region {region} has no worker settings: an admin sets its VPC, subnet and path to the "
                      f"head node under Worker EC2 Settings before jobs can run there.")]
    checks = [Check("region_settings", True, f"Region {region}: workers run in VPC {settings.vpc_id}, subnet "
                                             f"{settings.subnet_id}, reaching the head node by its "
                                             f"{settings.head_node_path} IP.")]
    subnet, network = _network_check(settings, clients("ec2", region))
    checks.append(network)
    if settings.head_node_path == "public" and subnet is not None:
        if subnet.get("MapPublicIpOnLaunch"):
            checks.append(Check("public_ip", True, f"Subnet {settings.subnet_id} assigns public IPv4 addresses."))
        else:
            checks.append(Check("public_ip", False,
                                f"Subnet {settings.subnet_id} does not assign public IPv4 addresses, but workers in "
                                f"{region} reach the head node by its public IP: turn on 'Auto-assign public IPv4 "
                                f"address' for the subnet, or choose a subnet that has it in the region's worker "
                                f"settings."))
    return checks


def _network_check(settings: RegionSettings, ec2) -> tuple[dict | None, Check]:
    """The subnet (None when it cannot be used) and the check of the VPC and subnet."""
    import botocore.exceptions
    region, vpc_id, subnet_id = settings.region, settings.vpc_id, settings.subnet_id
    fix = "correct it in the region's worker settings"
    try:
        vpcs = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"]
        subnets = ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"]
    except botocore.exceptions.ClientError as exc:
        code = _code(exc)
        if code.startswith("InvalidVpcID"):
            return None, Check("network", False, f"VPC {vpc_id} does not exist in {region}: {fix}.")
        if code.startswith("InvalidSubnetID"):
            return None, Check("network", False, f"Subnet {subnet_id} does not exist in {region}: {fix}.")
        if code in _DENIED:
            return None, Check("network", True, f"Could not verify VPC {vpc_id} and subnet {subnet_id}: the head "
                                                f"node may not describe them ({code}).", warning=True)
        return None, Check("network", False, f"EC2 in {region} refused to describe VPC {vpc_id} and subnet "
                                             f"{subnet_id}: {_reason(exc)}")
    except botocore.exceptions.BotoCoreError as exc:
        return None, Check("network", False, f"The head node cannot reach EC2 in {region}: {exc}")
    if not vpcs or not subnets:
        missing = f"VPC {vpc_id}" if not vpcs else f"Subnet {subnet_id}"
        return None, Check("network", False, f"{missing} does not exist in {region}: {fix}.")
    subnet = subnets[0]
    if subnet["VpcId"] != vpc_id:
        return None, Check("network", False,
                           f"Subnet {subnet_id} lies in VPC {subnet['VpcId']}, not in VPC {vpc_id}: choose a "
                           f"subnet of {vpc_id} (or the VPC {subnet['VpcId']}) in the region's worker settings.")
    return subnet, Check("network", True, f"Subnet {subnet_id} lies in VPC {vpc_id}.")


# -- the worker role -------------------------------------------------------------------------
def _role_checks(profile: str | None, clients: Clients, *, region: str) -> list[Check]:
    import botocore.exceptions
    if not profile:
        return [Check("worker_profile", False, "No worker instance profile is set: set EC2_WORKER_PROFILE to the "
                                               "instance profile the CloudFormation stack made for workers.")]
    name = profile.rsplit("/", 1)[-1]   # a name, or an ARN …:instance-profile/[path/]name
    iam = clients("iam", region)
    try:
        roles = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]["Roles"]
    except botocore.exceptions.ClientError as exc:
        if _code(exc) == "NoSuchEntity":
            return [Check("worker_profile", False,
                          f"The worker instance profile {name} does not exist: create it (the CloudFormation "
                          f"stack makes one) or set EC2_WORKER_PROFILE to an existing one.")]
        if _code(exc) in _DENIED:
            return [Check("worker_profile", True, f"Could not verify the worker instance profile {name}: the head "
                                                  f"node may not read it ({_code(exc)}).", warning=True)]
        return [Check("worker_profile", False, f"IAM refused to read the worker instance profile {name}: "
                                               f"{_reason(exc)}")]
    except botocore.exceptions.BotoCoreError as exc:
        return [Check("worker_profile", False, f"The head node cannot reach IAM: {exc}")]
    if not roles:
        return [Check("worker_profile", False, f"The worker instance profile {name} holds no role: add the worker "
                                               f"role to it.")]
    role_arn = roles[0]["Arn"]
    return [Check("worker_profile", True, f"Workers run with instance profile {name} (role {role_arn})."),
            _pass_role_check(role_arn, iam, clients("sts", region))]


def _pass_role_check(role_arn: str, iam, sts) -> Check:
    """Whether the head node's own principal may pass ``role_arn``; unverifiable is a warning."""
    import botocore.exceptions
    try:
        principal = _full_role_arn(principal_arn(sts.get_caller_identity()["Arn"]), iam)
        results = iam.simulate_principal_policy(PolicySourceArn=principal, ActionNames=["iam:PassRole"],
                                                ResourceArns=[role_arn])["EvaluationResults"]
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        reason = _code(exc) or type(exc).__name__
        return Check("pass_role", True, f"Could not verify that the head node may pass the worker role {role_arn} "
                                        f"(iam:SimulatePrincipalPolicy: {reason}); launching workers will tell.",
                     warning=True)
    decision = results[0]["EvalDecision"] if results else "implicitDeny"
    if decision == "allowed":
        return Check("pass_role", True, f"The head node may pass the worker role {role_arn}.")
    return Check("pass_role", False, f"The head node ({principal}) may not pass the worker role {role_arn} "
                                     f"(iam:PassRole: {decision}): allow iam:PassRole on that role in the head "
                                     f"node's policy.")


def principal_arn(caller_arn: str) -> str:
    """The IAM principal behind an STS caller ARN: an assumed role's session is its role
    (the role's path is not in the session ARN; a role under a path cannot be simulated)."""
    prefix, _, rest = caller_arn.partition(":assumed-role/")
    if not rest:
        return caller_arn
    partition, account = prefix.split(":")[1], prefix.split(":")[4]
    return f"arn:{partition}:iam::{account}:role/{rest.split('/')[0]}"


def _full_role_arn(principal: str, iam) -> str:
    """``principal`` with the role's path (``role/cloudmover/NAME``, as the template makes it),
    which the session ARN leaves out and the simulator needs; unchanged if it cannot be read."""
    import botocore.exceptions
    if ":role/" not in principal:
        return principal
    try:
        return iam.get_role(RoleName=principal.rsplit("/", 1)[1])["Role"]["Arn"]
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
        return principal


# -- buckets ---------------------------------------------------------------------------------
def _bucket_check(role: str, spec: StoreSpec, stores, *, write: bool) -> Check:
    name = f"{role}_bucket"
    if write and spec.kind == "local":
        return _local_destination_check(name, Path(spec.bucket))
    opened = stores.open_spec(spec) if stores is not None else open_store(spec)
    try:
        opened.check(write=write)
    except errors.PipelineError as exc:
        return Check(name, False, f"The head node cannot reach the {role} {spec.url()}: {exc}")
    finally:
        if stores is None:
            opened.close()
    return Check(name, True, f"The head node reaches the {role} {spec.url()}.")


def _local_destination_check(name: str, path: Path) -> Check:
    """A destination directory, checked without making it: a refused job leaves nothing behind."""
    path = path.resolve()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        return Check(name, False, f"The destination {path} cannot be made: {existing} is not a directory.")
    if not os.access(existing, os.W_OK | os.X_OK):
        return Check(name, False, f"The destination {path} cannot be written: directory {existing} is not "
                                  f"writable by the head node.")
    return Check(name, True, f"The head node can write the destination {path}.")


# -- the EC2 quota ---------------------------------------------------------------------------
def _quota_check(job: JobSpec, region: str, clients: Clients, *, cap: int) -> Check:
    import botocore.exceptions
    demand = JobDemand(job_id=None, tier=job.tier, codec=job.codec, largest_object=job.largest_object)
    count, kind = min(workers_for(demand), cap), instance_type(demand)
    if kind.split(".")[0][0] not in STANDARD_FAMILIES:
        return Check("ec2_quota", True, f"Not checked: {kind} does not count against the standard instance "
                                        f"quota.", warning=True)
    try:
        vcpus = clients("ec2", region).describe_instance_types(
            InstanceTypes=[kind])["InstanceTypes"][0]["VCpuInfo"]["DefaultVCpus"]
        quota = clients("service-quotas", region).get_service_quota(
            ServiceCode=STANDARD_QUOTA[0], QuotaCode=STANDARD_QUOTA[1])["Quota"]["Value"]
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError, LookupError) as exc:
        reason = _code(exc) or str(exc) or type(exc).__name__
        return Check("ec2_quota", True, f"Could not read the EC2 vCPU quota of {region} ({reason}): make sure "
                                        f"'Running On-Demand Standard instances' allows {count} × {kind}.",
                     warning=True)
    return quota_check(region=region, tier=job.tier, count=count, instance_type=kind, vcpus=vcpus, quota=quota)


def quota_check(*, region: str, tier: str, count: int, instance_type: str, vcpus: int, quota: float) -> Check:
    """The arithmetic: ``count`` instances of ``vcpus`` each against a quota of ``quota`` vCPUs."""
    needed = count * vcpus
    if quota >= needed:
        return Check("ec2_quota", True, f"Region {region} allows {quota:g} vCPUs of standard instances; the "
                                        f"{tier} tier needs {count} × {instance_type} = {needed}.")
    return Check("ec2_quota", False,
                 f"Region {region}'s quota 'Running On-Demand Standard instances' is {quota:g} vCPUs, but the "
                 f"{tier} tier needs {count} × {instance_type} ({vcpus} vCPUs each) = {needed}: request an increase "
                 f"to at least {needed} in the Service Quotas console for {region}, or choose a smaller tier.")


def _code(exc: Exception) -> str:
    """The AWS error code of a refused request ('' for a failure without an answer)."""
    import botocore.exceptions
    if isinstance(exc, botocore.exceptions.ClientError):
        return exc.response.get("Error", {}).get("Code", "")
    return ""


def _reason(exc: Exception) -> str:
    """Code and message of a botocore ClientError."""
    error = exc.response.get("Error", {})
    return f"{error.get('Code', '')}: {error.get('Message', '')}"
