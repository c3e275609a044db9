"""Turns worker events into job progress; closes jobs.

Each event settles one open task, once: events for a task that is already
done or failed are duplicates (a task delivered twice) and change nothing.
When every part of a multipart copy has reported, the completing task is
emitted; when a move's copies are verified, the delete task for their
sources is emitted; the objects of a batch whose copy or delete failed in a way
that may pass go again in a task of their own. A job closes when its planning
is done and no task is open: complete, complete with warnings (some objects
failed or a source was kept), or failed (nothing could be copied, or planning
failed). Objects the image codec encoded or decoded add their bytes read and
written to the job's codec counters; why a codec job moved an image unchanged
goes to the job log.
"""
from __future__ import annotations

import logging

from pipeline import messages
from headnode import models
from headnode.jobs import JobService
from headnode.models import FINAL_STATES, Job, ObjectFailure, Part, Task, Upload, WorkerState, db

log = logging.getLogger("cloudmover.aggregator")
TASK_ENVELOPE = ("schema_version", "type", "job_id", "task_id", "source", "destination")


class Aggregator:
    def __init__(self, service: JobService):
        self.service = service

    def apply(self, event: dict) -> None:
        if event["type"] == "WorkerHeartbeat":
            self._heartbeat(event)
            return
        handler = getattr(self, "_" + event["type"], None)
        if handler is None:
            log.info("ignoring %s event", event["type"])
            return
        with db.atomic("IMMEDIATE"):
            task = Task.get_or_none(Task.task_id == event["task_id"])
            if task is None or task.state in ("done", "failed"):
                log.info("duplicate or unknown event for task %s ignored", event["task_id"])
                return
            job = Job.get_by_id(task.job_id)
            finished = event["type"] != "TaskFailed" or not event["retryable"]
            if finished:
                task.state = "done" if event["type"] != "TaskFailed" else "failed"
                job.open_tasks -= 1
            if event.get("retries"):
                job.retries += event["retries"]
                codes = ", ".join(f"{code}×{n}" for code, n in sorted(event.get("retry_codes", {}).items()))
                models.log(job, f"task {task.task_id}: {event['retries']} request(s) retried ({codes})", "warning")
            follow_ups = handler(job, task, event)
            _save_changes(task)
            _save_changes(job)
        if finished or follow_ups:
            # its follow-ups go out at once; a finished task leaves room for one more of the job's
            # (of a cancelled job nothing goes out: its unsent tasks are dropped, follow-ups too,
            # and once its last task out has reported, its unfinished uploads aborted)
            self.service.publish_pending(job, first=[t["task_id"] for t in follow_ups])
        finish_if_done(self.service, task.job_id)

    def dead_lettered(self, body: dict) -> None:
        """A task that kept failing reached the dead-letter queue: record it as failed."""
        task_id = body.get("task_id") if isinstance(body, dict) else None
        task = Task.get_or_none(Task.task_id == task_id) if task_id else None
        if task is None:
            log.error("dead-lettered message of no known task: %.500s", body)
            return
        reason = task.last_error or "the task failed on every delivery"
        self.apply(messages.build("TaskFailed", job_id=task.job_id, task_id=task.task_id,
                                  task_type=task.type, retryable=False, attempt=max(1, task.attempts),
                                  reason=f"gave up after {max(1, task.attempts)} attempt(s): {reason}",
                                  keys=_task_keys(task.payload)))

    # -- handlers: return the follow-up tasks they added, to publish ----------------------
    def _ObjectsCopied(self, job: Job, task: Task, event: dict) -> list[dict]:
        copied = event["copied"]
        job.objects_done += sum(1 for o in copied if not o["skipped"])
        job.objects_skipped += sum(1 for o in copied if o["skipped"])
        job.bytes_done += sum(o["size"] for o in copied if not o["skipped"] and task.type != "CompleteMultipart")
        self._record_failures(job, task, [f for f in event["failed"] if not f["retryable"]])
        self._count_codec(job, task, copied)
        follow_ups = []
        if job.options["move"] and copied and job.state != "cancelled":
            # the delete task checks the copy's size: what was written (an encoded object is smaller);
            # and the source's version, where its store can (a local file changed since is kept)
            etags = _source_etags(task.payload)
            objects = [{"key": o["key"], "dest_key": o["dest_key"],
                        "size": o["size"] if o.get("written") is None else o["written"],
                        "etag": etags.get(o["key"])} for o in copied]
            follow_ups.append(self.service.task(job, "DeleteObjects", objects=objects))
        follow_ups += self._again(job, task, event["failed"])
        self.service.add_tasks(job, follow_ups)
        return follow_ups

    def _PartCopied(self, job: Job, task: Task, event: dict) -> list[dict]:
        upload = Upload.get((Upload.job == job) & (Upload.upload_id == event["upload_id"]))
        Part.insert(upload=upload, part_number=event["part_number"], etag=event["etag"], size=event["size"],
                    checksum=event.get("checksum")).on_conflict_ignore().execute()
        upload.parts_done += 1
        _save_changes(upload)
        job.bytes_done += event["size"]
        if upload.parts_done < upload.parts_total or upload.failed:
            return []
        parts = [{"part_number": p.part_number, "etag": p.etag, "size": p.size, "checksum": p.checksum}
                 for p in upload.parts.order_by(Part.part_number)]
        complete = [self.service.task(
            job, "CompleteMultipart", key=upload.key, dest_key=upload.dest_key, upload_id=upload.upload_id,
            object_size=upload.object_size, etag=upload.etag, parts=parts, sync=job.keeps_source_etags)]
        self.service.add_tasks(job, complete)
        return complete

    def _ObjectsDeleted(self, job: Job, task: Task, event: dict) -> list[dict]:
        job.objects_deleted += len(event["deleted"])
        kept = [f for f in event["failed"] if not f["retryable"]]
        for failure in kept:
            ObjectFailure.create(job=job, key=failure["key"], reason=failure["reason"], kind="delete",
                                 task_id=task.task_id)
        job.delete_failures += len(kept)
        follow_ups = self._again(job, task, event["failed"])
        self.service.add_tasks(job, follow_ups)
        return follow_ups

    def _TaskFailed(self, job: Job, task: Task, event: dict) -> list[dict]:
        task.attempts = max(task.attempts, event["attempt"])
        task.last_error = event["reason"]
        if event["retryable"]:
            models.log(job, f"task {task.task_id} attempt {event['attempt']} failed, will retry: "
                            f"{event['reason']}", "warning")
            return []
        models.log(job, f"task {task.task_id} failed: {event['reason']}", "error")
        keys = event["keys"] or _task_keys(task.payload)
        if task.type == "DeleteObjects":
            for key in keys:
                ObjectFailure.create(job=job, key=key, reason=f"source kept: {event['reason']}", kind="delete",
                                     task_id=task.task_id)
            job.delete_failures += len(keys)
            return []
        if task.type in ("CopyPart", "CompleteMultipart"):
            upload = Upload.get((Upload.job == job) & (Upload.upload_id == task.payload["upload_id"]))
            if upload.failed:
                return []
            upload.failed = True
            upload.save()
            self.service.abort_upload(job, upload)
            keys = [upload.key]
        self._record_failures(job, task, [{"key": k, "reason": event["reason"]} for k in keys])
        return []

    # -- helpers -------------------------------------------------------------------
    @staticmethod
    def _count_codec(job: Job, task: Task, copied: list[dict]) -> None:
        coded = [o for o in copied if o.get("codec") and not o["skipped"]]
        job.codec_objects += len(coded)
        job.codec_bytes_read += sum(o["size"] for o in coded)
        job.codec_bytes_written += sum(o["written"] for o in coded)
        notes: dict[str, list[str]] = {}
        for obj in copied:
            if obj.get("note"):
                notes.setdefault(obj["note"], []).append(obj["key"])
        for note, keys in notes.items():   # one line per reason and task, not one per object
            more = f" and {len(keys) - 1} more" if len(keys) > 1 else ""
            models.log(job, f"task {task.task_id}: {keys[0]}{more}: {note}", "warning")

    def _again(self, job: Job, task: Task, failed: list[dict]) -> list[dict]:
        """For the objects of ``task`` that failed in a way that may pass (``failed`` from its
        event, retryable), a task of its type and options: they go through the queue's
        redeliveries by themselves, and if they keep failing they alone are recorded as failed."""
        again = [failure for failure in failed if failure["retryable"]]
        if not again:
            return []
        keys = {failure["key"] for failure in again}
        options = {k: v for k, v in task.payload.items() if k not in TASK_ENVELOPE}
        retry = self.service.task(job, task.type, **{
            **options, "objects": [o for o in task.payload["objects"] if o["key"] in keys]})
        more = f" and {len(again) - 1} more" if len(again) > 1 else ""
        what = "not copied" if task.type == "CopyObjects" else "source not deleted"
        models.log(job, f"task {task.task_id}: {again[0]['key']}{more} {what}, sent again as task "
                        f"{retry['task_id']}: {again[0]['reason']}", "warning")
        return [retry]

    def _record_failures(self, job: Job, task: Task, failed: list[dict]) -> None:
        for failure in failed:
            ObjectFailure.create(job=job, key=failure["key"], reason=failure["reason"], task_id=task.task_id)
        job.objects_failed += len(failed)

    @staticmethod
    def _heartbeat(event: dict) -> None:
        moment = models.now()
        before = WorkerState.get_or_none(WorkerState.worker_id == event["worker_id"])
        rate, first_seen = 0.0, moment
        if before is not None:
            first_seen = before.first_seen
            elapsed = (moment - before.last_seen).total_seconds()
            if elapsed > 0 and event["bytes_done"] >= before.bytes_done:
                rate = (event["bytes_done"] - before.bytes_done) / elapsed
        WorkerState.insert(worker_id=event["worker_id"], region=event["region"], state=event["state"],
                           tasks_done=event["tasks_done"], bytes_done=event["bytes_done"], last_seen=moment,
                           first_seen=first_seen, bytes_per_second=rate).on_conflict_replace().execute()


def _save_changes(row) -> None:
    """Write the columns assigned since ``row`` was read. A whole row rewrote a task's payload
    (a batch's keys, JSON) and a job's stores and options on every event: most of an event's
    CPU in the head node."""
    if row.dirty_fields:
        row.save(only=row.dirty_fields)


def _source_etags(payload: dict) -> dict[str, str | None]:
    """The source ETag (or a local file's version) each object of a copy task was planned with."""
    if "objects" in payload:
        return {o["key"]: o.get("etag") for o in payload["objects"]}
    return {payload["key"]: payload.get("etag")} if "key" in payload else {}


def _task_keys(payload: dict) -> list[str]:
    return list(_source_etags(payload))


def finish_if_done(service: JobService, job_id: int) -> None:
    """Close the job when planning is done and no task is open."""
    with db.atomic("IMMEDIATE"):
        # three columns first: after most events the job goes on (a whole row's SELECT is
        # ~0.7 ms of peewee building its SQL, three times an event)
        state, planning_done, open_tasks = (Job.select(Job.state, Job.planning_done, Job.open_tasks)
                                            .where(Job.id == job_id).tuples().get())
        if state in FINAL_STATES or not planning_done or open_tasks > 0:
            return
        job = Job.get_by_id(job_id)
        settled = job.objects_done + job.objects_skipped
        if job.error or (job.objects_failed and not settled):
            job.state = "failed"
        elif job.objects_failed or job.delete_failures:
            job.state = "complete_with_warnings"
        else:
            job.state = "complete"
        job.finished_at = models.now()
        job.save()
        models.log(job, f"job {job.state.replace('_', ' ')}: {job.objects_done} copied, "
                        f"{job.objects_skipped} already present, {job.objects_failed} failed, "
                        f"{job.objects_deleted} source(s) deleted, {job.bytes_done} bytes",
                   "info" if job.state == "complete" else "warning")
    service.announce_finished()
    service.job_finished(job_id)
