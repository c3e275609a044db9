"""The planning loop: turn queued jobs into persisted, published tasks.

A job is planned one listing page at a time. Each page's tasks, its multipart
uploads and the listing position (the last key) are committed in one
transaction, then published; a head node restarted mid-plan resumes after the
last committed key and republishes what was committed but not yet sent.
"""
from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from pipeline import errors
from pipeline.checksums import already_present, kept_part_size, plain_md5
from pipeline.locations import not_utf8
from pipeline.planner import MAX_SINGLE_COPY, PlanSettings, object_ref, part_tasks, plan_page
from pipeline.store import ObjectInfo
from headnode import models
from headnode.aggregator import finish_if_done
from headnode.jobs import JobService
from headnode.models import Job, ObjectFailure, Upload, db

log = logging.getLogger("cloudmover.planning")
CHECK_THREADS = min(8, os.cpu_count() or 1) + 2     # sync's checks of large objects at once (see _present)
UNNAMED = "its name is not valid UTF-8, which no S3 key can be: rename it and copy it again"


class Planner:
    def __init__(self, service: JobService, *, page_size: int = 1000, stopping: threading.Event | None = None):
        """``stopping``: set when the head node stops; planning then ends after the page at hand,
        and a restarted head node resumes after it."""
        self.service = service
        self.page_size = page_size
        self.stopping = stopping or threading.Event()

    def resume_unsent(self) -> None:
        """At start: publish tasks that were committed but never sent."""
        for job in Job.select().where(Job.state.in_(("planning", "running"))):
            sent = self.service.publish_pending(job)
            if sent:
                models.log(job, f"head node restarted: republished {sent} unsent task(s)")

    def step(self) -> bool:
        """Plan every page of the next job waiting for planning; False when none waits.

        A job turns ``running`` with its first committed page, so a job whose planning a
        stopped head node left half done is ``running`` and not yet ``planning_done``.
        """
        job = (Job.select().where(Job.state.in_(("queued", "planning", "running")) & ~Job.planning_done)
               .order_by(Job.id).first())
        if job is None:
            return False
        try:
            self._plan(job)
        except errors.PipelineError as exc:
            self._fail(job, str(exc))
        except Exception as exc:    # a bug or data nothing foresaw: this job fails, the others go on
            log.exception("planning job %s failed", job.id)
            self._fail(job, f"{type(exc).__name__}: {exc}")
        return True

    def _plan(self, job: Job) -> None:
        if job.state == "queued":
            job.state, job.started_at = "planning", job.started_at or models.now()
            job.save()
            models.log(job, "planning started")
        source, destination = self.service.store(job.source), self.service.store(job.destination)
        for page in self._pages(job, source):
            job = Job.get_by_id(job.id)
            if job.state == "cancelled" or self.stopping.is_set():
                return
            self._commit_page(job, page, source, destination)
            self.service.publish_pending(job)
        if self.stopping.is_set():   # the last page may have been the one at hand: still not done here
            return
        with db.atomic("IMMEDIATE"):
            job = Job.get_by_id(job.id)
            if job.state == "cancelled":
                return
            job.planning_done = True
            if job.objects_total == 0 and not job.open_tasks:
                job.state, job.error = "failed", "nothing to copy: the source holds no objects"
                job.finished_at = models.now()
            job.save()
            models.log(job, f"planning done: {job.objects_total} object(s), {job.bytes_total} bytes")
        if job.finished:
            self.service.announce_finished()
            self.service.job_finished(job.id)
        finish_if_done(self.service, job.id)

    def _pages(self, job: Job, source):
        options = job.options
        if options.get("retry_keys") is not None:
            keys = [k for k in options["retry_keys"] if job.plan_marker is None or k > job.plan_marker]
            for start in range(0, len(keys), self.page_size):
                page = [found for key in keys[start:start + self.page_size]
                        if (found := self._still_there(job, source, key)) is not None]
                if page:
                    yield page
            return
        if options["single"]:
            if job.plan_marker is None:
                yield [self._head(source, job.source["prefix"])]
            return
        # The first objects listed make a page of their own, one batch: their task goes out
        # while the store lists the next thousand (on a local server that is 50 ms sooner).
        first = options["batch_objects"]
        page: list[ObjectInfo] = []
        for listed in source.list(job.source["prefix"], recursive=options["recursive"],
                                  start_after=job.plan_marker, first_page_size=first):
            page.extend(listed)
            if first and page:
                yield page[:first]
                page, first = page[first:], 0
            while len(page) >= self.page_size:
                yield page[:self.page_size]
                page = page[self.page_size:]
        if page:
            yield page

    @staticmethod
    def _still_there(job: Job, source, key: str) -> ObjectInfo | None:
        """A failed object to retry, or None when it is gone from the source (a failure of its
        own: the others are still retried)."""
        found = source.head(key)
        if found is None:
            # a name shown with U+FFFD is one that could never be read, an entry that is no file
            # (a named pipe) is one still: say that again
            reason = UNNAMED if "\ufffd" in key else source.problem(key) or "it is no longer at the source"
            with db.atomic("IMMEDIATE"):
                job = Job.get_by_id(job.id)
                if _fail_object(job, key, reason):
                    job.objects_total += 1
                    job.save()
        return found

    @staticmethod
    def _head(source, key: str) -> ObjectInfo:
        found = source.head(key)
        if found is None:
            raise errors.NoSuchKey(f"{source.spec.url(key)} no longer exists")
        return found

    def _commit_page(self, job: Job, page: list[ObjectInfo], source, destination) -> None:
        options = job.options
        settings = PlanSettings(multipart_threshold=options["multipart_threshold"],
                                part_size=options["part_size"], batch_objects=options["batch_objects"],
                                whole_object_limit=options.get("whole_object_limit", 0))
        source_prefix, dest_prefix = job.source["prefix"], job.destination["prefix"]
        named, left_out = [], []    # left out: (name shown, why)
        for obj in page:
            shown = not_utf8(obj.key)
            if obj.problem is not None:
                left_out.append((shown or obj.key, obj.problem))
            elif shown is None:
                named.append(obj)
            else:
                left_out.append((shown, UNNAMED))
        planned = plan_page(named, source_prefix=source_prefix, dest_prefix=dest_prefix, settings=settings)
        codec = options.get("codec", "none")
        task_codec = {"codec": codec} if codec != "none" else {}   # absent from plain copy tasks
        uploads = []
        refs = [object_ref(obj, dest_key) for obj, dest_key in planned.multipart]
        present = _present(source, destination, refs) if options["sync"] else [False] * len(refs)
        keep_etag = job.keeps_source_etags
        # network calls, made before the transaction
        for (obj, dest_key), ref, here in zip(planned.multipart, refs, present):
            if here or keep_etag and _copied_whole_keeps_etag(source, destination, obj):
                # present (the worker's check finds it so), or best copied whole
                planned.copy_batches.append([ref])
                continue
            layout = settings
            if keep_etag:       # see worker.strategies.copy_keeping_parts
                part_size = kept_part_size(source, destination, obj.key, obj.size, obj.etag)
                layout = replace(settings, part_size=part_size) if part_size else settings
            upload_id = destination.create_multipart(dest_key, source.attributes(obj.key))
            uploads.append((obj, dest_key, upload_id, layout))
        with db.atomic("IMMEDIATE"):
            job = Job.get_by_id(job.id)
            tasks = [self.service.task(job, "CopyObjects", objects=batch, sync=options["sync"], **task_codec)
                     for batch in planned.copy_batches]
            for obj, dest_key, upload_id, layout in uploads:
                parts = part_tasks(obj, dest_key, upload_id, layout,
                                   lambda type_, **f: self.service.task(job, type_, **f))
                Upload.create(job=job, key=obj.key, dest_key=dest_key, upload_id=upload_id,
                              object_size=obj.size, etag=obj.etag, parts_total=len(parts))
                tasks.extend(parts)
            self.service.add_tasks(job, tasks)
            if codec != "none" and uploads:
                models.log(job, f"{len(uploads)} object(s) larger than the image codec limit of "
                                f"{settings.whole_object_limit} bytes move unchanged, in parts "
                                f"(first: {uploads[0][0].key})", "warning")
            # a file whose name no key can hold, or that is no file to copy, fails here, once (a
            # restarted head node lists again after the last key it could store)
            listed_again = sum(not _fail_object(job, shown, why) for shown, why in left_out)
            job.objects_total += len(page) - listed_again
            job.bytes_total += sum(o.size for o in page)
            job.largest_object = max(job.largest_object, max(o.size for o in page))
            job.plan_marker = named[-1].key if named else job.plan_marker
            if job.state == "planning":
                job.state = "running"
            job.save()

    def _fail(self, job: Job, reason: str) -> None:
        log.error("planning job %s failed: %s", job.id, reason)
        with db.atomic("IMMEDIATE"):
            job = Job.get_by_id(job.id)
            job.planning_done = True
            job.error = f"planning failed: {reason}"
            job.save()
            models.log(job, job.error, "error")
        finish_if_done(self.service, job.id)


def _fail_object(job: Job, key: str, reason: str) -> bool:
    """Record ``key`` as a failed object found while planning; False when it already is (a
    restarted head node lists again after the last key it stored)."""
    if ObjectFailure.select().where((ObjectFailure.job == job) & (ObjectFailure.key == key)
                                    & ~ObjectFailure.retried).exists():
        return False
    ObjectFailure.create(job=job, key=key, reason=reason)
    job.objects_failed += 1
    return True


def _copied_whole_keeps_etag(source, destination, obj: ObjectInfo) -> bool:
    """Sync mode: an object uploaded whole (an MD5 ETag) keeps its ETag through a server-side
    CopyObject, so that the next sync can compare it; copied in parts it would not. One
    CopyObject copies up to 5 GiB."""
    return bool(plain_md5(obj.etag)) and obj.size <= MAX_SINGLE_COPY \
        and source.spec.same_endpoint(destination.spec)


def _present(source, destination, refs: list[dict]) -> list[bool]:
    """Sync mode: which of a page's objects to copy in parts the destination already holds,
    checked side by side: a check may hash a local file of gigabytes (hashlib lets go of the
    GIL), or wait on a store's answers."""
    if len(refs) < 2:
        return [already_present(source, destination, ref) for ref in refs]
    with ThreadPoolExecutor(min(len(refs), CHECK_THREADS)) as pool:
        return list(pool.map(lambda ref: already_present(source, destination, ref), refs))
