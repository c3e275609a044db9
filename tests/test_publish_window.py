"""A job keeps at most PUBLISH_WINDOW of its tasks in its queue; follow-ups of
finished work (completing an upload, deleting a moved source) go out at once.
So a long multipart job lands its objects as it goes, not all at its end."""
from __future__ import annotations

import io
import random

import pytest
from boto3.s3.transfer import TransferConfig

from pipeline import bus as busmod
from pipeline import messages
from support.faultproxy import FaultProxy
from support.objects import MiB, assert_same_objects, listed_keys, put_objects, small_and_large
from support.queues import queue_depth
from support.waiting import wait_finished, wait_for

SMALL_PARTS = {"MULTIPART_THRESHOLD": 5 * MiB, "PART_SIZE": 5 * MiB, "BATCH_OBJECTS": 10}


def states(job_id: int, kind: str) -> list[str]:
    """The states of the job's tasks of ``kind``, in the order they were planned (the job's sequence)."""
    from headnode.models import Task
    tasks = Task.select().where((Task.job == job_id) & (Task.type == kind))
    return [t.state for t in sorted(tasks, key=lambda t: int(t.task_id.rsplit("-", 1)[1]))]


def report_part(node, job_id: int, part) -> None:
    """Report a part copied, as a worker would."""
    node.aggregator.apply(messages.load(messages.build(
        "PartCopied", job_id=job_id, task_id=part.task_id, key=part.payload["key"],
        upload_id=part.payload["upload_id"], part_number=part.payload["part_number"],
        etag="0123456789abcdef0123456789abcdef", size=part.payload["length"]), messages.EVENTS))


def planned_two_large_objects(head_node, buckets, s3_env, seed: int):
    """A head node without workers, a window of three, and a planned job of two three-part
    objects: (node, job, the destination bucket)."""
    from headnode.models import Job
    source, dest = buckets
    rng = random.Random(seed)
    put_objects(s3_env.client(), source, {f"large/object-{n}": rng.randbytes(11 * MiB) for n in range(2)})
    node = head_node(FLEET="none", PUBLISH_WINDOW=3, **SMALL_PARTS)
    job = node.service.create(source=f"s3://{source}/", destination=f"s3://{dest}/",
                              endpoint_url=s3_env.endpoint_url)
    wait_for(lambda: Job.get_by_id(job.id).planning_done, timeout=60, what="planning")
    return node, job, dest


def test_an_upload_is_completed_before_the_parts_planned_after_it(head_node, buckets, s3_env):
    """On a head node without workers, parts are reported by hand as a worker would."""
    from headnode.models import Job, Task, Upload
    source, dest = buckets
    rng = random.Random(21)
    objects = {f"large/object-{n}": rng.randbytes(11 * MiB) for n in range(3)}     # three parts each
    put_objects(s3_env.client(), source, objects)
    node = head_node(FLEET="none", PUBLISH_WINDOW=3, **SMALL_PARTS)
    job = node.service.create(source=f"s3://{source}/", destination=f"s3://{dest}/",
                              endpoint_url=s3_env.endpoint_url)
    job = wait_for(lambda: (j := Job.get_by_id(job.id)).planning_done and j, timeout=60, what="planning")
    assert states(job.id, "CopyPart") == ["queued"] * 3 + ["pending"] * 6
    assert queue_depth(node, busmod.task_queue(job.region))[0] == 3, "the broker holds the window, no more"

    first = Upload.select().where(Upload.job == job.id).order_by(Upload.id).first()
    parts = [t for t in Task.select().where((Task.job == job.id) & (Task.type == "CopyPart"))
             if t.payload["upload_id"] == first.upload_id]
    assert len(parts) == 3 and {t.state for t in parts} == {"queued"}
    for part in parts:
        report_part(node, job.id, part)

    # each reported part made room for the next; the first object's completion went out at
    # once, ahead of the parts still waiting (and then took its place in the window)
    assert states(job.id, "CompleteMultipart") == ["queued"]
    assert states(job.id, "CopyPart") == ["done"] * 3 + ["queued"] * 2 + ["pending"] * 4
    # (no worker took the three reported by hand: they are still in the queue too)
    assert queue_depth(node, busmod.task_queue(job.region))[0] == 3 + 2 + 1


def test_a_cancelled_job_never_sends_what_the_window_held_back(head_node, buckets, s3_env):
    from headnode.models import Job, Task
    source, dest = buckets
    rng = random.Random(23)
    put_objects(s3_env.client(), source, {f"large/object-{n}": rng.randbytes(11 * MiB) for n in range(2)})
    node = head_node(FLEET="none", PUBLISH_WINDOW=2, **SMALL_PARTS)
    job = node.service.create(source=f"s3://{source}/", destination=f"s3://{dest}/",
                              endpoint_url=s3_env.endpoint_url)
    wait_for(lambda: Job.get_by_id(job.id).planning_done, timeout=60, what="planning")
    node.service.cancel(job.id)

    assert states(job.id, "CopyPart") == ["queued"] * 2 + ["failed"] * 4
    held = Task.select().where((Task.job == job.id) & (Task.state == "failed")).first()
    assert held.last_error == "the job was cancelled before this task was sent"
    assert Job.get_by_id(job.id).open_tasks == 2, "only the tasks sent before the cancel can still report"
    assert queue_depth(node, busmod.task_queue(job.region))[0] == 2


def test_a_cancelled_job_aborts_its_unfinished_uploads_once_its_last_part_reports(head_node, buckets, s3_env):
    """The parts out at the cancel are the first object's three: the last to report makes its
    completion, which a cancelled job must drop (not leave pending, which would keep it open)."""
    from headnode.models import Job, JobLog, Task
    client = s3_env.client()
    node, job, dest = planned_two_large_objects(head_node, buckets, s3_env, 24)
    node.service.cancel(job.id)

    def open_uploads() -> int:
        return len(client.list_multipart_uploads(Bucket=dest).get("Uploads", []))
    assert open_uploads() == 2, "three parts are still out: nothing is aborted under them"

    for part in Task.select().where((Task.job == job.id) & (Task.state == "queued")):
        report_part(node, job.id, part)

    assert states(job.id, "CompleteMultipart") == ["failed"]
    assert (Job.get_by_id(job.id).open_tasks, open_uploads()) == (0, 0)
    assert JobLog.select().where((JobLog.job == job.id) & JobLog.message.contains(
        "aborted 2 multipart upload(s) the cancelled job left unfinished")).exists()
    assert Job.get_by_id(job.id).state == "cancelled"


def test_an_abort_the_store_refuses_is_logged_and_the_upload_left(head_node, buckets, s3_env):
    """The destination answers a cancelled job's aborts with AccessDenied: each refusal is in the
    job's log, naming the object and why (the upload stays until a lifecycle rule removes it),
    and the source is untouched."""
    from headnode.models import Job, JobLog, Task
    source, dest = buckets
    client = s3_env.client()
    objects = {f"large/object-{n}": random.Random(26).randbytes(11 * MiB) for n in range(2)}
    put_objects(client, source, objects)
    with FaultProxy(s3_env.endpoint_url, methods={"DELETE"}, every_nth=1,
                    error=(403, "AccessDenied", "Access Denied")) as proxy:
        node = head_node(FLEET="none", PUBLISH_WINDOW=3, **SMALL_PARTS)
        job = node.service.create(source=f"s3://{source}/", destination=f"s3://{dest}/",
                                  endpoint_url=proxy.endpoint_url)
        wait_for(lambda: Job.get_by_id(job.id).planning_done, timeout=60, what="planning")
        node.service.cancel(job.id)
        for part in Task.select().where((Task.job == job.id) & (Task.state == "queued")):
            report_part(node, job.id, part)
        assert proxy.faults == 2, "one abort for each unfinished upload, refused"

    refused = [e.message for e in JobLog.select().where((JobLog.job == job.id) & (JobLog.level == "warning"))]
    assert sorted(m.split(":")[0] for m in refused) == [f"could not abort the upload of {key}" for key in objects]
    assert all("access denied (AccessDenied)" in m for m in refused), refused
    assert not JobLog.select().where((JobLog.job == job.id) & JobLog.message.contains("aborted")).exists()
    assert len(client.list_multipart_uploads(Bucket=dest).get("Uploads", [])) == 2
    assert Job.get_by_id(job.id).state == "cancelled"
    assert_same_objects(client, source, objects)


def test_a_move_through_a_narrow_window_copies_and_deletes_everything(head_node, buckets, s3_env):
    source, dest = buckets
    client = s3_env.client()
    objects = small_and_large(22, small=35, large=(6 * MiB + 1, 11 * MiB))
    put_objects(client, source, objects)
    node = head_node(workers=1, PUBLISH_WINDOW=2, **SMALL_PARTS)
    job = node.service.create(source=f"s3://{source}/", destination=f"s3://{dest}/", move=True,
                              endpoint_url=s3_env.endpoint_url)
    done = wait_finished(node.service, job.id)
    assert (done.state, done.objects_done, done.objects_deleted) == ("complete", len(objects), len(objects))
    assert_same_objects(client, dest, objects)
    assert listed_keys(client, source) == []
    assert set(states(job.id, "CopyPart")) == set(states(job.id, "DeleteObjects")) == {"done"}


def test_a_cancelled_job_is_retried_only_once_nothing_of_it_is_out(head_node, buckets, s3_env):
    """Retrying reopens the job, and a reopened job never aborts the uploads the cancel left
    unfinished: so its failed objects are planned again only once its last task out reports."""
    from headnode.jobs import Conflict
    from headnode.models import Job, Task
    client = s3_env.client()
    node, job, dest = planned_two_large_objects(head_node, buckets, s3_env, 25)
    failing = Task.select().where((Task.job == job.id) & (Task.state == "queued")).first()
    node.aggregator.apply(messages.load(messages.build(
        "TaskFailed", job_id=job.id, task_id=failing.task_id, task_type="CopyPart", reason="AccessDenied",
        retryable=False, attempt=1, keys=[]), messages.EVENTS))
    node.service.cancel(job.id)
    still_out = Job.get_by_id(job.id).open_tasks
    assert still_out >= 2

    with pytest.raises(Conflict, match=f"cancelled with {still_out} task\\(s\\) still running"):
        node.service.retry_failed(job.id)
    assert Job.get_by_id(job.id).state == "cancelled"

    for part in Task.select().where((Task.job == job.id) & (Task.state == "queued")):
        report_part(node, job.id, part)
    assert client.list_multipart_uploads(Bucket=dest).get("Uploads", []) == []
    retried = node.service.retry_failed(job.id)
    assert retried.state == "queued" and retried.options["retry_keys"] == ["large/object-0"]


def test_the_first_batch_is_planned_and_sent_before_the_rest_is_listed(head_node, buckets, s3_env, monkeypatch):
    from headnode.models import Job
    from headnode.planning import Planner
    source, dest = buckets
    put_objects(s3_env.client(), source, {f"f/{n:03d}": b"x" * n for n in range(35)})
    pages, commit = [], Planner._commit_page

    def recorded(self, job, page, *args):
        pages.append([o.key for o in page])
        return commit(self, job, page, *args)
    monkeypatch.setattr(Planner, "_commit_page", recorded)
    node = head_node(FLEET="none", BATCH_OBJECTS=10)
    job = node.service.create(source=f"s3://{source}/f/", destination=f"s3://{dest}/", endpoint_url=s3_env.endpoint_url)
    wait_for(lambda: Job.get_by_id(job.id).planning_done, timeout=60, what="planning")
    # one batch on its own, listed with a short first request; then the rest, every object once
    assert [len(page) for page in pages] == [10, 25]
    assert sum(pages, []) == [f"f/{n:03d}" for n in range(35)]
    assert states(job.id, "CopyObjects") == ["queued"] * 4


@pytest.mark.parametrize("codec, keeps", [("none", True), ("compress", False)])
def test_a_sync_completes_its_uploads_keeping_the_source_etag_only_when_it_copies_as_is(
        head_node, buckets, s3_env, codec, keeps):
    """A sync's copy of an object uploaded in parts is completed so that it keeps the source's
    ETag (the worker settles it, copying it again whole where copied parts lose it); a codec
    sync's objects too large for the codec move in its own parts and never could."""
    from headnode.models import Job, Task
    source, dest = buckets
    in_parts = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=6 * MiB)     # two parts
    s3_env.client().upload_fileobj(io.BytesIO(random.Random(31).randbytes(11 * MiB)), source, "large/object",
                                   Config=in_parts)
    node = head_node(FLEET="none", CODEC_MAX_OBJECT=5 * MiB, **SMALL_PARTS)
    job = node.service.create(source=f"s3://{source}/", destination=f"s3://{dest}/", sync=True, codec=codec,
                              endpoint_url=s3_env.endpoint_url)
    wait_for(lambda: Job.get_by_id(job.id).planning_done, timeout=60, what="planning")
    for part in Task.select().where((Task.job == job.id) & (Task.type == "CopyPart")):
        report_part(node, job.id, part)
    [complete] = Task.select().where((Task.job == job.id) & (Task.type == "CompleteMultipart"))
    assert complete.payload["sync"] is keeps
