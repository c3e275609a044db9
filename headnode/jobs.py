"""Job control shared by the REST API, the CLI and the submission queue.

Creating a job validates it against the stores before anything runs (bad
credentials, a missing bucket, an empty source or a destination inside the
source are refused with the store's reason) and runs the pre-flight checks
(``preflight``: with FLEET=ec2 the region's network, the worker role and the
EC2 quota too; a failure raises ``PreflightFailed``), then stores a ``Job`` row; the
planner takes it from there. Tasks are written as rows first and published
after the commit, so a head node stopped at any point republishes what it had
not yet sent and never loses or doubles a task.

A job's tasks go to one region's queue (``regions``).
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
from pathlib import Path

from peewee import SQL

from pipeline import bus as busmod
from pipeline import errors, messages
from pipeline.credentials import Credentials, Sealer
from pipeline.locations import parse_location
from pipeline.places import check_not_inside
from pipeline.planner import Location
from pipeline.store import StoreCache, StoreSpec, ref_from_spec
from headnode import audit, models, preflight
from headnode.accesserrors import Forbidden
from headnode.config import plan_settings
from headnode.models import FINAL_STATES, Job, ObjectFailure, Task, Upload, db
from headnode.regions import job_region

log = logging.getLogger("cloudmover.jobs")
PUBLISH_BATCH = 500


class NotFound(errors.PipelineError):
    code = "not_found"


class Conflict(errors.PipelineError):
    code = "conflict"


class JobService:
    def __init__(self, config: dict, sealer: Sealer, bus: busmod.Bus):
        self.config, self.sealer, self.bus = config, sealer, bus
        self._stores = StoreCache(sealer)
        self._aws_clients = None   # boto3 clients of pre-flight checks: FLEET=ec2 only
        self._ensured: set[str] = set()
        self._publishing = threading.Lock()
        # Wake-ups instead of polling: the planning loop waits for a job to plan, a watcher
        # for a job to finish (the loops still poll, slowly, for work from other processes).
        self.plan_requested = threading.Event()
        self._finished = threading.Condition()
        self._finished_count = 0
        self.finished_hooks: list = []   # callables(job_id) told when a job closes (mail notifications)

    # -- creating ---------------------------------------------------------------
    def create(self, *, source: str, destination: str, move: bool = False, recursive: bool = True,
               sync: bool = False, tier: str = "express", name: str | None = None,
               endpoint_url: str | None = None, credentials: Credentials | None = None,
               submitted_by: str | None = None, codec: str = "none", folders: dict | None = None,
               notify: list[str] | None = None) -> Job:
        """``folders``: the folders a user may use (then only ``folder:`` locations are accepted);
        None for the node's operator, who may name any location. ``notify``: usernames to email."""
        src, dst = self._locations(source, destination, tier=tier, codec=codec, endpoint_url=endpoint_url,
                                   credentials=credentials, folders=folders)
        # before the job is stored, so a refused job never reaches the fleet; reaching both stores is a check
        checks = preflight.require(preflight.JobSpec(src.spec, dst.spec, tier=tier, codec=codec),
                                   config=self.config, clients=self._aws, stores=self._stores)
        src_store = self._stores.open_spec(src.spec)
        single = self._single_object(src_store, src)
        if single:
            dst = _single_destination(dst, src.prefix, destination)
            check_not_inside(src, dst, recursive=False)     # a move onto itself would delete it
        else:
            src = Location(src.spec, _as_directory(src.prefix))
            dst = Location(dst.spec, _as_directory(dst.prefix))
            _require_directory(dst, src)
            check_not_inside(src, dst, recursive=recursive)
            _require_objects(src_store, src, recursive)
        if dst.spec.kind == "local":   # pre-flight found it writable; made once the job is sure to be stored
            self._stores.open_spec(dst.spec).check(write=True)
        settings = plan_settings(self.config, codec=codec)
        options = {"move": move, "recursive": recursive, "sync": sync, "tier": tier, "single": single,
                   "multipart_threshold": settings.multipart_threshold, "part_size": settings.part_size,
                   "batch_objects": settings.batch_objects, "codec": codec,
                   "whole_object_limit": settings.whole_object_limit, "notify": list(notify or [])}
        region = job_region(src.spec, dst.spec, codec=codec, default=self.config["REGION"])
        job = Job.create(name=name or f"{'Move' if move else 'Copy'} {src.url()} to {dst.url()}",
                         source_url=source, destination_url=destination, options=options,
                         source=self._location_ref(src), destination=self._location_ref(dst),
                         region=region, submitted_by=submitted_by)
        with_codec = f", image codec: {codec} in region {region}" if codec != "none" else ""
        models.log(job, f"job created: {job.name} (tier {tier}{with_codec})")
        for check in checks:
            if check.warning:
                models.log(job, f"pre-flight: {check.message}", "warning")
        audit.record(submitted_by, "job_created", f"job {job.id}", job.name)
        self.plan_requested.set()
        return job

    def preflight_checks(self, *, source: str, destination: str, tier: str = "express", codec: str = "none",
                         endpoint_url: str | None = None, credentials: Credentials | None = None,
                         folders: dict | None = None) -> list[dict]:
        """The pre-flight checks of a job ``create`` would be asked for, as dicts (name, ok, message,
        warning), without creating it."""
        src, dst = self._locations(source, destination, tier=tier, codec=codec, endpoint_url=endpoint_url,
                                   credentials=credentials, folders=folders)
        return preflight.checks_as_dicts(preflight.JobSpec(src.spec, dst.spec, tier=tier, codec=codec),
                                         config=self.config, clients=self._aws, stores=self._stores)

    def _locations(self, source: str, destination: str, *, tier: str, codec: str, endpoint_url: str | None,
                   credentials: Credentials | None, folders: dict | None) -> tuple[Location, Location]:
        """A job's source and destination as written, parsed; its tier and codec mode checked."""
        if folders is not None:
            _only_folders(source, destination, endpoint_url)
        if tier not in messages.TIERS:
            raise errors.BadLocation(f"unknown delivery tier {tier!r}; choose express, plus or ultra")
        if codec not in messages.CODEC_MODES:
            raise errors.BadLocation(f"unknown image codec mode {codec!r}; choose none, compress or decompress")
        where = {"endpoint_url": endpoint_url or self.config["ENDPOINT_URL"], "region": self.config["REGION"],
                 "credentials": credentials, "folders": self.config["FOLDERS"] if folders is None else folders}
        return parse_location(source, **where), parse_location(destination, **where)

    def _aws(self, service: str, region: str):
        """A boto3 client for pre-flight checks (FLEET=ec2 only), made on first use."""
        if self._aws_clients is None:
            from headnode.ec2api import AwsClients   # boto3 only where EC2 is used
            self._aws_clients = AwsClients(self.config["EC2_ENDPOINT_URL"])
        return self._aws_clients(service, region)

    def estimate(self, *, source: str, destination: str, recursive: bool = True, sync: bool = False,
                 tier: str = "express", codec: str = "none", move: bool = False,
                 folders: dict | None = None) -> dict:
        """Objects, bytes, time and cost of a job before it is created (``estimate``); the
        listing is sampled for huge prefixes."""
        from headnode.estimate import estimate_copy
        src, dst = self._locations(source, destination, tier=tier, codec=codec, endpoint_url=None,
                                   credentials=None, folders=folders)
        src = Location(src.spec, _as_directory(src.prefix))
        kind = codec if codec != "none" else ("move" if move else "copy")
        found = estimate_copy(src, dst, source_store=self._stores.open_spec(src.spec), kind=kind, tier=tier,
                              config=self.config, recursive=recursive, sync=sync)
        return {"objects": found.shape.objects, "bytes": found.shape.bytes, "exact": found.shape.exact,
                "duration_seconds": found.duration_s, "cost_usd": found.total_cost, "workers": found.workers,
                "instance_type": found.instance_type, "detail": found.to_dict()}

    def close(self) -> None:
        self._stores.close()

    def _location_ref(self, location: Location) -> dict:
        return {**ref_from_spec(location.spec, self.sealer), "prefix": location.prefix}

    @staticmethod
    def _single_object(store, location: Location) -> bool:
        return bool(location.prefix) and not location.prefix.endswith("/") and store.head(location.prefix) is not None

    # -- stores of a job ---------------------------------------------------------
    def store(self, ref: dict):
        return self._stores.open(ref)

    def task(self, job: Job, type_: str, **fields) -> dict:
        """A task message of ``job`` (ids from the job's sequence; call inside a transaction)."""
        job.task_seq += 1
        source = {k: v for k, v in job.source.items() if k != "prefix"}
        destination = {k: v for k, v in job.destination.items() if k != "prefix"}
        return messages.build(type_, job_id=job.id, task_id=f"{job.id}-{job.task_seq}",
                              source=source, destination=destination, **fields)

    def add_tasks(self, job: Job, tasks: list[dict]) -> None:
        """Record tasks as pending rows of ``job`` (inside the caller's transaction)."""
        if tasks:
            Task.insert_many([{"task_id": t["task_id"], "job": job.id, "type": t["type"], "payload": t}
                              for t in tasks]).execute()
            job.open_tasks += len(tasks)

    def publish_pending(self, job: Job, *, first: list[str] = ()) -> int:
        """Publish tasks of ``job`` written but not yet sent, and mark them queued: the tasks
        ``first`` names (follow-ups of finished work: completing an upload, deleting the sources
        of a move) whatever the queue holds, then the oldest others while fewer than
        PUBLISH_WINDOW of the job's tasks are queued or running.

        The window keeps a follow-up behind at most that many tasks of its job: with everything
        planned already queued, the parts of a long multipart job all ran before the first
        upload was completed, so its objects landed (and a move freed its sources) only at
        the very end."""
        queue = busmod.task_queue(job.region)
        with self._publishing:          # the planner and the aggregator both publish
            if Job.select(Job.state).where(Job.id == job.id).scalar() == "cancelled":
                # what was written since the cancel (a page the planner committed as it came, a
                # completion for a part still out) is dropped, as cancel dropped the rest
                with db.atomic("IMMEDIATE"):
                    job = Job.get_by_id(job.id)
                    if _drop_unsent(job):
                        job.save()
                self.abort_abandoned_uploads(job.id)     # once nothing of the job is out
                return 0
            if queue not in self._ensured:   # with its dead-letter queue, before the first task
                self.bus.ensure(queue)
                self._ensured.add(queue)
            sent = 0
            if first:
                sent = self._send(queue, list(Task.select().where(Task.task_id.in_(list(first))
                                                                   & (Task.state == "pending"))))
            while True:
                room = self.config["PUBLISH_WINDOW"] - (
                    Task.select().where((Task.job == job.id) & (Task.state == "queued")).count())
                if room <= 0:
                    return sent
                # in the order planned: rowid breaks ties within one page's transaction
                batch = list(Task.select().where((Task.job == job.id) & (Task.state == "pending"))
                             .order_by(Task.created_at, SQL("rowid")).limit(min(room, PUBLISH_BATCH)))
                if not batch:
                    return sent
                sent += self._send(queue, batch)

    def _send(self, queue: str, tasks: list[Task]) -> int:
        for task in tasks:
            self.bus.publish(queue, task.payload)
        if tasks:
            Task.update(state="queued").where(Task.task_id.in_([t.task_id for t in tasks])
                                              & (Task.state == "pending")).execute()
        return len(tasks)

    # -- reading ------------------------------------------------------------------
    def get(self, job_id: int) -> Job:
        job = Job.get_or_none(Job.id == job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        return job

    def await_finish(self, job_id: int, *, timeout: float) -> Job:
        """The job once it has finished, or as it stands after ``timeout`` seconds."""
        with self._finished:
            seen = self._finished_count
        job = self.get(job_id)
        if not job.finished:
            with self._finished:
                self._finished.wait_for(lambda: self._finished_count != seen, timeout=timeout)
            job = self.get(job_id)
        return job

    def announce_finished(self) -> None:
        """Wake ``await_finish`` callers: a job has finished (called after the commit)."""
        with self._finished:
            self._finished_count += 1
            self._finished.notify_all()

    def job_finished(self, job_id: int) -> None:
        """Tell the ``finished_hooks`` that ``job_id`` closed (complete, with warnings or failed),
        after the commit; a hook only queues work, it never blocks the caller."""
        for hook in self.finished_hooks:
            hook(job_id)

    def list(self, *, include_finished: bool = True, finished_within: float = 0, limit: int = 100) -> list[Job]:
        """Jobs, newest first; without ``include_finished`` only unfinished ones and those that
        finished in the last ``finished_within`` seconds."""
        query = Job.select().order_by(Job.id.desc()).limit(limit)
        if not include_finished:
            recent = models.now() - dt.timedelta(seconds=finished_within)
            query = query.where(Job.state.not_in(FINAL_STATES) | (Job.finished_at >= recent))
        return list(query)

    def failures(self, job_id: int, *, limit: int = 100, offset: int = 0) -> list[ObjectFailure]:
        return list(ObjectFailure.select().where((ObjectFailure.job == job_id) & ~ObjectFailure.retried)
                    .order_by(ObjectFailure.id).limit(limit).offset(offset))

    # -- acting --------------------------------------------------------------------
    def cancel(self, job_id: int, *, actor: str | None = None) -> Job:
        with db.atomic("IMMEDIATE"):
            job = self.get(job_id)
            if job.finished:
                raise Conflict(f"job {job_id} has already finished ({job.state})")
            job.state, job.finished_at = "cancelled", models.now()
            held = _drop_unsent(job)
            job.save()
            models.log(job, "job cancelled; tasks already running finish, no new work is planned"
                            + (f" ({held} planned task(s) not sent)" if held else ""))
        audit.record(actor, "job_cancelled", f"job {job_id}")
        self.announce_finished()
        self.abort_abandoned_uploads(job_id)
        return job

    def abort_abandoned_uploads(self, job_id: int) -> int:
        """Abort the multipart uploads a cancelled job leaves unfinished, once none of its tasks
        is still out (a part still running would fail on an aborted upload); returns how many.
        Its completions are never sent, so they would hold their parts' storage at the
        destination until a lifecycle rule removed them."""
        job = Job.get_by_id(job_id)
        if job.state != "cancelled" or job.open_tasks > 0:
            return 0
        completed = {t.payload["upload_id"] for t in Task.select().where(
            (Task.job == job_id) & (Task.type == "CompleteMultipart") & (Task.state == "done"))}
        abandoned = [u for u in Upload.select().where((Upload.job == job_id) & ~Upload.failed)
                     if u.upload_id not in completed]
        aborted = 0
        for upload in abandoned:
            if self.abort_upload(job, upload):
                Upload.update(failed=True).where(Upload.id == upload.id).execute()   # not to be aborted again
                aborted += 1
        if aborted:
            models.log(job, f"aborted {aborted} multipart upload(s) the cancelled job left unfinished")
        return aborted

    def abort_upload(self, job: Job, upload: Upload) -> bool:
        """Abort one multipart upload of ``job`` at its destination; whether that worked. A
        failure is logged on the job: the upload may linger until a lifecycle rule removes it."""
        try:
            self.store(job.destination).abort_multipart(upload.dest_key, upload.upload_id)
        except Exception as exc:  # its object is reported failed or its job cancelled either way
            models.log(job, f"could not abort the upload of {upload.dest_key}: {exc}", "warning")
            return False
        return True

    def retry_failed(self, job_id: int, *, actor: str | None = None) -> Job:
        """Plan the failed objects of a finished job again."""
        with db.atomic("IMMEDIATE"):
            job = self.get(job_id)
            if not job.finished:
                raise Conflict(f"job {job_id} is still {job.state}; retry once it has finished")
            if job.state == "cancelled" and job.open_tasks > 0:
                # its retry would reopen it, and the uploads it leaves unfinished are aborted only
                # once nothing of a cancelled job is out: they would stay at the destination
                raise Conflict(f"job {job_id} was cancelled with {job.open_tasks} task(s) still running; "
                               "retry once they have reported")
            failed = list(ObjectFailure.select().where((ObjectFailure.job == job) & ~ObjectFailure.retried
                                                       & (ObjectFailure.kind == "copy")))
            if not failed:
                raise Conflict(f"job {job_id} has no failed objects to retry")
            keys = sorted({f.key for f in failed})
            ObjectFailure.update(retried=True).where(ObjectFailure.id.in_([f.id for f in failed])).execute()
            job.objects_failed -= len(failed)
            job.objects_total -= len(keys)
            job.options = {**job.options, "retry_keys": keys}
            job.plan_marker, job.planning_done = None, False
            job.state, job.finished_at = "queued", None
            job.save()
            models.log(job, f"retrying {len(keys)} failed object(s)")
        audit.record(actor, "job_retried", f"job {job_id}", f"{len(keys)} failed object(s)")
        self.plan_requested.set()
        return job


def _only_folders(source: str, destination: str, endpoint_url: str | None) -> None:
    """Users reach stores only through folders granted to them: a raw bucket, endpoint or
    path on the head node is for its operator."""
    for location in (source, destination):
        if not location.startswith("folder:"):
            raise Forbidden(f"{location!r}: name a folder granted to you (folder:NAME/path); "
                            "other locations are for the head node's operator")
    if endpoint_url:
        raise Forbidden("endpoint_url is for the head node's operator; folders carry their own endpoint")


def _as_directory(prefix: str) -> str:
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def _require_directory(dst: Location, src: Location) -> None:
    """A local destination of many objects is a directory, or nothing yet: never a file."""
    if dst.spec.kind != "local":
        return
    path = Path(dst.spec.bucket) / dst.prefix
    if path.exists() and not path.is_dir():
        raise errors.BadLocation(f"the destination {path} is a file: the objects of {src.url()} need a directory")


def _single_destination(dst: Location, source_key: str, written: str) -> Location:
    """Where one object lands: into a directory-like destination, or as the key named."""
    name = source_key.rsplit("/", 1)[-1]
    if dst.spec.kind == "local":
        path = Path(dst.spec.bucket) / dst.prefix
        if written.endswith("/") or path.is_dir():
            return Location(StoreSpec("local", str(path)), name)
        return Location(StoreSpec("local", str(path.parent)), path.name)
    if not dst.prefix or dst.prefix.endswith("/"):
        return Location(dst.spec, dst.prefix + name)
    return dst


def _require_objects(store, location: Location, recursive: bool) -> None:
    # one key answers for a recursive listing; a top-level one may start with many sub-prefixes
    for page in store.list(location.prefix, recursive=recursive, page_size=1 if recursive else 1000):
        if page:
            return
    raise errors.BadLocation(f"nothing to copy: {location.url()} holds no objects "
                             f"{'(recursively)' if recursive else '(top level)'}; check the path")


def _drop_unsent(job: Job) -> int:
    """Mark the tasks of ``job`` (cancelled) still unsent failed, and take them off its open count
    (inside the caller's transaction; the caller saves the job): a later retry of the job must not
    send them."""
    dropped = (Task.update(state="failed", last_error="the job was cancelled before this task was sent")
               .where((Task.job == job.id) & (Task.state == "pending")).execute())
    job.open_tasks -= dropped
    return dropped
