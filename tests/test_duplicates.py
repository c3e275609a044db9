"""A task delivered twice gives one completion: nothing is counted twice, and
an event applied twice settles its task once."""
from __future__ import annotations

import logging
import time

import pytest

from conftest import bus_config
from pipeline import bus as busmod
from pipeline import messages
from support.objects import MiB, assert_same_objects, put_objects, small_and_large
from support.queues import queue_depth
from support.waiting import wait_finished, wait_for

SMALL_PARTS = {"MULTIPART_THRESHOLD": 5 * MiB, "PART_SIZE": 5 * MiB, "BATCH_OBJECTS": 10}
COUNTERS = ("state", "objects_total", "bytes_total", "objects_done", "objects_skipped", "bytes_done",
            "objects_failed", "open_tasks", "task_seq", "finished_at")


def counters(job_id: int) -> dict:
    from headnode.models import Job, Part, Task
    job = Job.get_by_id(job_id)
    return {**{name: getattr(job, name) for name in COUNTERS},
            "tasks": {(t.task_id, t.state) for t in Task.select().where(Task.job == job_id)},
            "parts": Part.select().count()}


def ignored(caplog, task_id: str) -> bool:
    return any(r.name == "cloudmover.aggregator" and r.getMessage() == f"duplicate or unknown event for task "
               f"{task_id} ignored" for r in caplog.records)


@pytest.mark.parametrize("bus", ["sqlite", "sqs"])
def test_tasks_delivered_again_after_the_job_completed_change_nothing(bus, head_node, buckets, s3_env, tmp_path,
                                                                      request, caplog):
    from headnode.models import Task
    caplog.set_level(logging.INFO, logger="cloudmover.aggregator")
    moto = request.getfixturevalue("moto") if bus == "sqs" else None
    source, dest = buckets
    client = s3_env.client()
    objects = small_and_large(11, small=40, large=(6 * MiB + 1,))
    put_objects(client, source, objects)
    node = head_node(workers=2, **SMALL_PARTS, **bus_config(bus, tmp_path, moto))
    job = node.service.create(source=f"s3://{source}/", destination=f"s3://{dest}/",
                              endpoint_url=s3_env.endpoint_url)
    done = wait_finished(node.service, job.id)
    assert done.state == "complete"
    before = counters(job.id)

    again = [Task.select().where((Task.job == job.id) & (Task.type == kind)).order_by(Task.task_id).first()
             for kind in ("CopyObjects", "CopyPart", "CompleteMultipart")]
    assert node.fleet.pids(done.region), "the region's workers are still up to take the duplicates"
    for task in again:
        node.bus.publish(busmod.task_queue(done.region), task.payload)
    node.bus.close()

    for task in again:
        wait_for(lambda: ignored(caplog, task.task_id), timeout=60, what=f"the duplicate of {task.type} to report")
    tasks_queue = busmod.task_queue(done.region)
    wait_for(lambda: queue_depth(node, tasks_queue) == (0, 0) and queue_depth(node, busmod.EVENTS)[1] == 0,
             timeout=60, what="the queues to drain")
    time.sleep(1.0)   # settle: anything still in flight would land now
    assert counters(job.id) == before
    assert_same_objects(client, dest, objects)


def test_an_event_applied_twice_counts_once(head_node, buckets, s3_env):
    """On a head node without workers, events for its open tasks are applied by hand, each twice."""
    from headnode.models import Job, Part, Task, Upload
    source, dest = buckets
    objects = small_and_large(12, small=15, large=(11 * MiB,))
    put_objects(s3_env.client(), source, objects)
    node = head_node(FLEET="none", **SMALL_PARTS)
    job = node.service.create(source=f"s3://{source}/", destination=f"s3://{dest}/",
                              endpoint_url=s3_env.endpoint_url)
    job = wait_for(lambda: (j := Job.get_by_id(job.id)).planning_done and j, timeout=60, what="planning")
    assert job.state == "running" and job.open_tasks == 2 + 3   # two batches, three parts

    batch = Task.select().where((Task.job == job.id) & (Task.type == "CopyObjects")).order_by(Task.task_id).first()
    copied = [{**{k: o[k] for k in ("key", "dest_key", "size")}, "checksum": None, "skipped": False}
              for o in batch.payload["objects"]]
    part = Task.select().where((Task.job == job.id) & (Task.type == "CopyPart")).order_by(Task.task_id).first()
    events = [messages.build("ObjectsCopied", job_id=job.id, task_id=batch.task_id, copied=copied),
              messages.build("PartCopied", job_id=job.id, task_id=part.task_id, key=part.payload["key"],
                             upload_id=part.payload["upload_id"], part_number=part.payload["part_number"],
                             etag="0123456789abcdef0123456789abcdef", size=part.payload["length"])]
    for event in events + events:
        node.aggregator.apply(messages.load(event, messages.EVENTS))

    after = Job.get_by_id(job.id)
    assert after.objects_done == len(copied)
    assert after.bytes_done == sum(o["size"] for o in copied) + part.payload["length"]
    assert after.open_tasks == job.open_tasks - 2 and not after.finished
    assert {Task.get_by_id(t.task_id).state for t in (batch, part)} == {"done"}
    upload = Upload.get(Upload.job == job.id)
    assert (upload.parts_done, upload.parts_total) == (1, 3)
    assert Part.select().where(Part.upload == upload).count() == 1
