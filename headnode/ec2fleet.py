"""The ``ec2`` fleet provider: worker instances in each job's region (FLEET=ec2).

Sizing. A region's fleet is the sum over its unfinished jobs of their tiers'
worker counts (``demand.workers_for``), never more than
``EC2_MAX_WORKERS_PER_REGION``; each job's instances are of the type its
largest planned object asks for (``demand.instance_type``), chosen when they
launch, which is once the job's first listing page is planned. Instances
launched for a job stay its own until the region goes idle; an instance whose
jobs have all finished is taken over by a new job wanting that type, and
otherwise, while other jobs run in the region, terminated as surplus.

Launching. RunInstances (all of a step's instances or none) in the region's
``RegionSettings`` subnet, with the security group named ``EC2_SECURITY_GROUP``
in its VPC, the worker instance profile, the AMI (an id, or ``resolve:ssm:``
a parameter read in the region), IMDSv2 required, a fresh ClientToken per
step (a retried call never launches twice) and the tags ``cloudmover:role``
= worker, ``cloudmover:region``, ``cloudmover:jobs``, ``cloudmover:head-node``
(this install's id, so two head nodes never touch each other's workers) and
``Name``. The user data (headnode/userdata.py) installs and starts the
worker; the secret key it needs is put in the SSM SecureString parameter
``/cloudmover/<head-node id>/secret-key`` of the region first.

Ending. A region without unfinished jobs whose task queue stays empty for
``EC2_IDLE_SECONDS`` has its workers terminated. The sweeper, at the first
reconcile and every ``EC2_SWEEP_SECONDS``, lists this head node's tagged
workers in every region it knows: ones it does not track (left by a crashed
run) are taken over where jobs run and terminated elsewhere; tracked ones that
ended outside CloudMover are reported and replaced. ``stop_all`` terminates
every worker. Each launch and end is a ``WorkerInstance`` row (instance-hours).

Errors. An EC2 or SSM refusal (no capacity, a quota, a missing permission, a
missing subnet…) goes to the affected jobs' logs with what to do about it; the
region is retried after a growing pause (30 s to 5 min).
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from headnode import ec2api, models, userdata
from headnode.demand import JobDemand, instance_type, workers_for
from headnode.ec2api import AwsClients, FleetError
from headnode.models import RegionSettings, WorkerInstance
from headnode.userdata import Bootstrap

log = logging.getLogger("cloudmover.ec2fleet")

ROLE_TAG, REGION_TAG, JOBS_TAG, NODE_TAG = ("cloudmover:role", "cloudmover:region", "cloudmover:jobs",
                                            "cloudmover:head-node")
LIVE_STATES = ("pending", "running", "stopping", "stopped")
RETRY_SECONDS = (30, 60, 120, 300)   # pauses after a region's EC2 call failed, growing
GONE_GRACE_SECONDS = 120             # EC2 lists a new instance only after a while: not "gone" before
DEFAULT_AMI = "resolve:ssm:/aws/service/debian/release/12/latest/amd64"   # Debian 12, amd64, latest


@dataclass(frozen=True)
class Ec2Settings:
    node_id: str                  # this install's id: the cloudmover:head-node tag
    worker_profile: str           # instance profile name or ARN
    ami: str = DEFAULT_AMI
    security_group: str = "default"
    idle_seconds: float = 300.0
    max_workers: int = 50         # per region
    sweep_seconds: float = 300.0

    @property
    def secret_parameter(self) -> str:
        return f"/cloudmover/{self.node_id}/secret-key"


def ec2_fleet(config: dict, *, queue_size) -> "Ec2Fleet":
    """The fleet of a head node with ``config`` (FLEET=ec2); ``queue_size(region)``: tasks waiting."""
    settings = Ec2Settings(node_id=install_id(config), worker_profile=config["EC2_WORKER_PROFILE"],
                           ami=config["EC2_WORKER_AMI"], security_group=config["EC2_SECURITY_GROUP"],
                           idle_seconds=float(config["EC2_IDLE_SECONDS"]),
                           max_workers=int(config["EC2_MAX_WORKERS_PER_REGION"]),
                           sweep_seconds=float(config["EC2_SWEEP_SECONDS"]))
    return Ec2Fleet(settings, clients=AwsClients(config["EC2_ENDPOINT_URL"]), bootstrap=Bootstrap(config),
                    queue_size=queue_size)


def install_id(config: dict) -> str:
    """HEAD_NODE_ID, or the id kept in DATA_DIR/head-node-id (made on first use)."""
    if config["HEAD_NODE_ID"]:
        return config["HEAD_NODE_ID"]
    path = Path(config["DATA_DIR"]) / "head-node-id"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(uuid.uuid4().hex[:16])
    return path.read_text().strip()


@dataclass
class Worker:
    instance_id: str
    instance_type: str
    jobs: list[int]
    since: float                  # clock time it was launched (or taken over)


@dataclass
class _Region:
    workers: dict[str, Worker] = field(default_factory=dict)
    idle_since: float | None = None
    retry_at: float = 0.0
    failures: int = 0
    prepared: dict = field(default_factory=dict)   # (vpc, subnet, path) -> launch arguments


class Ec2Fleet:
    def __init__(self, settings: Ec2Settings, *, clients: AwsClients, bootstrap: Bootstrap, queue_size,
                 clock=time.monotonic):
        self.settings, self.clients, self.bootstrap = settings, clients, bootstrap
        self.queue_size, self.clock = queue_size, clock
        self._regions: dict[str, _Region] = {}
        self._next_sweep = None   # the first reconcile sweeps
        self._lock = threading.Lock()
        self._closed = False

    # -- the fleet provider interface ---------------------------------------------------
    def reconcile(self, demand: dict[str, list[JobDemand]]) -> list[tuple[str, str]]:
        """Launch and end workers for ``demand`` (region -> its unfinished jobs); (region, what)
        of each worker that ended outside CloudMover."""
        with self._lock:
            if self._closed:
                return []
            now = self.clock()
            ended = []
            if self._next_sweep is None or now >= self._next_sweep:
                ended = self._sweep(demand)
                self._next_sweep = now + self.settings.sweep_seconds
            for region in sorted(set(self._regions) | set(demand)):
                state = self._regions.setdefault(region, _Region())
                if demand.get(region):
                    state.idle_since = None
                    self._size(region, state, demand[region])
                elif state.workers:
                    self._wind_down(region, state)
            return ended

    def stop_all(self) -> None:
        """Terminate every worker of this head node (a head node restarted later starts new ones)."""
        with self._lock:
            self._closed = True
            for region, state in self._regions.items():
                if state.workers:
                    self._terminate(region, state, list(state.workers), reason="stopped")

    def instances(self, region: str) -> dict[str, Worker]:
        """The workers this fleet runs in ``region``, by instance id."""
        with self._lock:
            return dict(self._regions[region].workers) if region in self._regions else {}

    # -- sizing ----------------------------------------------------------------------------
    def _size(self, region: str, state: _Region, jobs: list[JobDemand]) -> None:
        held = {job.job_id: [] for job in jobs}
        free = dict(state.workers)
        for job in jobs:   # a job keeps the instances launched for it
            own = [w for w in free.values() if job.job_id in w.jobs][:workers_for(job)]
            for worker in own:
                del free[worker.instance_id]
            held[job.job_id] = own
        retag = []
        for job in (j for j in jobs if j.planned):   # then takes over idle ones of its type
            wanted, kind = workers_for(job) - len(held[job.job_id]), instance_type(job)
            for worker in [w for w in free.values() if w.instance_type == kind][:max(0, wanted)]:
                del free[worker.instance_id]
                worker.jobs.append(job.job_id)
                held[job.job_id].append(worker)
                retag.append(worker)
        if retag:
            self._record_jobs(region, retag)
        if self.clock() < state.retry_at:   # pausing after a failed call
            return
        if free and all(job.planned for job in jobs):   # a job still planning may want them yet
            self._terminate(region, state, list(free), reason="surplus")
        room = self.settings.max_workers - sum(len(h) for h in held.values())
        for job in (j for j in jobs if j.planned):
            count = min(workers_for(job) - len(held[job.job_id]), room)
            if count > 0:
                if not self._launch(region, state, job=job, count=count):
                    return
                room -= count

    def _wind_down(self, region: str, state: _Region) -> None:
        now = self.clock()
        if state.idle_since is None:
            state.idle_since = now
        if now - state.idle_since < self.settings.idle_seconds or now < state.retry_at:
            return
        try:
            waiting = self.queue_size(region)
        except Exception as exc:   # the bus is another service: without its answer, the jobs' state decides
            log.warning("region %s: cannot read the task queue's length (%s); no job needs its workers", region, exc)
            waiting = 0
        if waiting:
            state.idle_since = now
            return
        self._terminate(region, state, list(state.workers), reason="idle")

    # -- launching ---------------------------------------------------------------------------
    def _launch(self, region: str, state: _Region, *, job: JobDemand, count: int) -> bool:
        kind = instance_type(job)
        try:
            arguments = self._prepare(region, state)
            tags = [{"Key": ROLE_TAG, "Value": "worker"}, {"Key": REGION_TAG, "Value": region},
                    {"Key": JOBS_TAG, "Value": str(job.job_id)}, {"Key": NODE_TAG, "Value": self.settings.node_id},
                    {"Key": "Name", "Value": f"CloudMover worker {region} (job {job.job_id})"}]
            answer = self._call(region, "run_instances", InstanceType=kind, MinCount=count, MaxCount=count,
                                ClientToken=uuid.uuid4().hex,
                                TagSpecifications=[{"ResourceType": "instance", "Tags": tags},
                                                   {"ResourceType": "volume", "Tags": tags}],
                                **arguments)
        except FleetError as exc:
            self._failed(region, state, job_ids=[job.job_id],
                         message=f"cannot launch {count} {kind} worker(s) in {region}: {exc}")
            return False
        state.failures, state.retry_at = 0, 0.0
        ids = [instance["InstanceId"] for instance in answer["Instances"]]
        now = self.clock()
        for instance_id in ids:
            state.workers[instance_id] = Worker(instance_id, kind, [job.job_id], now)
        WorkerInstance.insert_many([{"instance_id": i, "region": region, "instance_type": kind,
                                     "jobs": [job.job_id]} for i in ids]).execute()
        models.log(job.job_id, f"launched {len(ids)} {kind} worker instance(s) in {region} "
                               f"(subnet {arguments['SubnetId']}): {', '.join(ids)}")
        log.info("region %s: launched %s for job %s", region, ids, job.job_id)
        return True

    def _prepare(self, region: str, state: _Region) -> dict:
        """RunInstances arguments of the region's workers, but the type, count, token and tags."""
        row = RegionSettings.get_or_none(RegionSettings.region == region)
        if row is None:
            raise FleetError(f"no worker settings for region {region}: an admin must enter the VPC and subnet "
                             f"workers use there (Worker EC2 settings)")
        key = (row.vpc_id, row.subnet_id, row.head_node_path)
        if key not in state.prepared:
            parameter = self.settings.secret_parameter
            self._call(region, "put_parameter", service="ssm", Name=parameter, Value=self.bootstrap.secret,
                       Type="SecureString", Overwrite=True,
                       Description="CloudMover: the secret key its workers open sealed credentials with")
            try:
                script = self.bootstrap.user_data(region, path=row.head_node_path, secret_parameter=parameter)
            except userdata.UserDataError as exc:
                raise FleetError(str(exc)) from None
            state.prepared[key] = {
                "ImageId": self._image(region), "SubnetId": row.subnet_id,
                "SecurityGroupIds": [self._security_group(region, row.vpc_id)],
                "IamInstanceProfile": ({"Arn": self.settings.worker_profile}
                                       if self.settings.worker_profile.startswith("arn:")
                                       else {"Name": self.settings.worker_profile}),
                "UserData": script, "InstanceInitiatedShutdownBehavior": "terminate",
                "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"}}
        return state.prepared[key]

    def _image(self, region: str) -> str:
        if not self.settings.ami.startswith("resolve:ssm:"):
            return self.settings.ami
        name = self.settings.ami.removeprefix("resolve:ssm:")
        return self._call(region, "get_parameter", service="ssm", Name=name)["Parameter"]["Value"]

    def _security_group(self, region: str, vpc_id: str) -> str:
        name = self.settings.security_group
        groups = self._call(region, "describe_security_groups", Filters=[
            {"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": [name]}])["SecurityGroups"]
        if not groups:
            raise FleetError(f"VPC {vpc_id} in {region} has no security group named {name!r} "
                             f"(EC2_SECURITY_GROUP): create it, or check the region's VPC in Worker EC2 settings")
        return groups[0]["GroupId"]

    def _call(self, region: str, operation: str, *, service: str = "ec2", **arguments):
        return ec2api.call(self.clients, region, operation, service=service, profile=self.settings.worker_profile,
                           **arguments)

    def _failed(self, region: str, state: _Region, *, job_ids: list, message: str) -> None:
        state.failures += 1
        pause = RETRY_SECONDS[min(state.failures, len(RETRY_SECONDS)) - 1]
        state.retry_at = self.clock() + pause
        log.error("%s (retrying in %d s)", message, pause)
        for job_id in job_ids:
            if job_id is not None:
                models.log(job_id, f"{message} (retrying in {pause} s)", "error")

    def _record_jobs(self, region: str, workers: list[Worker]) -> None:
        for worker in workers:
            WorkerInstance.update(jobs=worker.jobs).where(WorkerInstance.instance_id == worker.instance_id).execute()
        try:
            for worker in workers:
                self._call(region, "create_tags", Resources=[worker.instance_id],
                           Tags=[{"Key": JOBS_TAG, "Value": _jobs_tag(worker.jobs)}])
        except FleetError as exc:   # the tag is for people looking at the console; the database has it
            log.warning("region %s: re-tagging workers failed: %s", region, exc)

    # -- ending --------------------------------------------------------------------------------
    def _terminate(self, region: str, state: _Region, instance_ids: list[str], *, reason: str) -> None:
        ended = []
        for start in range(0, len(instance_ids), 500):
            try:
                ended.extend(self._terminate_batch(region, instance_ids[start:start + 500]))
            except FleetError as exc:
                jobs = sorted({job for i in instance_ids if i in state.workers for job in state.workers[i].jobs})
                self._failed(region, state, job_ids=jobs if reason == "surplus" else [],
                             message=f"cannot terminate {reason} worker instance(s) in {region}: {exc}")
                break
        for instance_id in ended:
            state.workers.pop(instance_id, None)
        if ended:
            WorkerInstance.update(terminated_at=models.now(), end_reason=reason).where(
                WorkerInstance.instance_id.in_(ended) & WorkerInstance.terminated_at.is_null()).execute()
            log.info("region %s: terminated %d %s worker(s): %s", region, len(ended), reason, ended)

    def _terminate_batch(self, region: str, instance_ids: list[str]) -> list[str]:
        """The instances of ``instance_ids`` now ending (one EC2 does not know has ended already)."""
        try:
            self._call(region, "terminate_instances", InstanceIds=instance_ids)
        except FleetError as exc:
            if exc.aws_code != "InvalidInstanceID.NotFound":
                raise
            if len(instance_ids) > 1:   # the call names none of them: find the one EC2 does not know
                return [i for one in instance_ids for i in self._terminate_batch(region, [one])]
        return instance_ids

    def _sweep(self, demand: dict[str, list[JobDemand]]) -> list[tuple[str, str]]:
        regions = ({row.region for row in RegionSettings.select(RegionSettings.region)} | set(self._regions)
                   | set(demand) | {row.region for row in WorkerInstance.select(WorkerInstance.region)
                                    .where(WorkerInstance.terminated_at.is_null())})
        ended = []
        for region in sorted(regions):
            try:
                found = self._listed(region)
            except FleetError as exc:
                log.error("region %s: cannot list this head node's workers: %s", region, exc)
                continue
            ended.extend(self._sweep_region(region, found, busy=bool(demand.get(region))))
        return ended

    def _listed(self, region: str) -> dict[str, dict]:
        """This head node's workers in ``region`` that EC2 lists (not yet shutting down)."""
        filters = [{"Name": f"tag:{NODE_TAG}", "Values": [self.settings.node_id]},
                   {"Name": f"tag:{ROLE_TAG}", "Values": ["worker"]},
                   {"Name": "instance-state-name", "Values": list(LIVE_STATES)}]
        found, token = {}, None
        while True:
            page = self._call(region, "describe_instances", Filters=filters, **({"NextToken": token} if token else {}))
            for reservation in page["Reservations"]:
                for instance in reservation["Instances"]:
                    found[instance["InstanceId"]] = instance
            token = page.get("NextToken")
            if not token:
                return found

    def _sweep_region(self, region: str, found: dict[str, dict], *, busy: bool) -> list[tuple[str, str]]:
        state = self._regions.setdefault(region, _Region())
        now, ended = self.clock(), []
        for instance_id, worker in list(state.workers.items()):
            if instance_id not in found and now - worker.since >= GONE_GRACE_SECONDS:
                del state.workers[instance_id]
                ended.append((region, f"worker instance {instance_id} ended outside CloudMover; replacing it"))
                WorkerInstance.update(terminated_at=models.now(), end_reason="gone").where(
                    WorkerInstance.instance_id == instance_id).execute()
        WorkerInstance.update(terminated_at=models.now(), end_reason="gone").where(
            (WorkerInstance.region == region) & WorkerInstance.terminated_at.is_null()
            & WorkerInstance.instance_id.not_in(list(found) or [""])
            & WorkerInstance.instance_id.not_in(list(state.workers) or [""])).execute()
        leftovers = {i: found[i] for i in found if i not in state.workers}
        for instance_id, instance in leftovers.items():
            _record_leftover(region, instance)
        taken = [i for i, inst in leftovers.items() if busy and inst["State"]["Name"] in ("pending", "running")]
        for instance_id in taken:   # a previous run's workers serve the jobs it left
            instance = leftovers[instance_id]
            state.workers[instance_id] = Worker(instance_id, instance["InstanceType"],
                                                _tagged_jobs(instance), now - GONE_GRACE_SECONDS)
        rest = [i for i in leftovers if i not in taken]
        if rest:
            self._terminate(region, state, rest, reason="leftover")
        return ended


def _record_leftover(region: str, instance: dict) -> None:
    """A row for a tagged worker the database does not know (one from a lost database)."""
    launched = instance.get("LaunchTime")
    WorkerInstance.insert(instance_id=instance["InstanceId"], region=region, instance_type=instance["InstanceType"],
                          jobs=_tagged_jobs(instance),
                          launched_at=(launched.astimezone(dt.timezone.utc).replace(tzinfo=None)
                                       if launched else models.now())).on_conflict_ignore().execute()


def _tagged_jobs(instance: dict) -> list[int]:
    tags = {tag["Key"]: tag["Value"] for tag in instance.get("Tags", ())}
    return [int(part) for part in tags.get(JOBS_TAG, "").split(",") if part.strip().isdigit()]


def _jobs_tag(jobs: list[int]) -> str:
    """The ``cloudmover:jobs`` tag value: the job ids, the latest ones if they exceed a tag's 256 characters."""
    value = ",".join(str(job) for job in jobs)
    return value if len(value) <= 256 else value[-256:].split(",", 1)[-1]
