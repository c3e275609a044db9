"""A worker SIGKILLed in the middle of a multipart copy: its leased parts come
back after the visibility timeout, another worker copies them, and the job
completes with every byte in place, counted once."""
from __future__ import annotations

import os
import signal
import uuid

import peewee as pw
import pytest

from conftest import bus_config
from pipeline import bus as busmod
from support.objects import MiB, assert_same_files, assert_same_objects, put_objects
from support.queues import queue_depth
from support.waiting import wait_finished, wait_for

BIG = {"big/a": 40 * MiB + 7, "big/b": 37 * MiB - 5}


@pytest.fixture
def destination(request, tmp_path):
    """Where the copy goes, through the worker: a local directory or a bucket of another S3 server."""
    if request.param == "local":
        root = tmp_path / "dest"
        return {"url": str(root), "region": "local", "settings": {},
                "check": lambda objects: assert_same_files(root, objects)}
    moto = request.getfixturevalue("moto")
    bucket = f"far-{uuid.uuid4().hex[:10]}"
    client = moto.client("s3")
    client.create_bucket(Bucket=bucket)
    folder = {"bucket": bucket, "endpoint_url": moto.endpoint_url, "region": moto.region,
              "access_key_id": moto.access_key, "secret_access_key": moto.secret_key}
    return {"url": "folder:far/", "region": moto.region, "settings": {"FOLDERS": {"far": folder}},
            "check": lambda objects: assert_same_objects(client, bucket, objects)}


def parts_reported(job_id: int) -> int:
    from headnode.models import Upload
    return Upload.select(pw.fn.COALESCE(pw.fn.SUM(Upload.parts_done), 0)).where(Upload.job == job_id).scalar()


@pytest.mark.parametrize("destination", ["local", "other-s3"], indirect=True)
@pytest.mark.parametrize("bus", ["sqlite", "sqs"])
def test_a_killed_worker_s_parts_are_redelivered_and_counted_once(bus, destination, head_node, buckets, s3_env,
                                                                   tmp_path, request):
    from headnode.models import Job, JobLog, Part, Upload
    moto = request.getfixturevalue("moto") if bus == "sqs" else None
    source, _ = buckets
    objects = {key: os.urandom(size) for key, size in BIG.items()}
    put_objects(s3_env.client(), source, objects)
    node = head_node(workers=1, WORKER_THREADS=2, VISIBILITY_TIMEOUT=5, MULTIPART_THRESHOLD=5 * MiB,
                     PART_SIZE=5 * MiB, **destination["settings"], **bus_config(bus, tmp_path, moto))
    region, tasks = destination["region"], busmod.task_queue(destination["region"])
    job = node.service.create(source=f"s3://{source}/", destination=destination["url"],
                              endpoint_url=s3_env.endpoint_url)

    def mid_copy():
        assert not Job.get_by_id(job.id).finished, "the job finished before a worker could be killed"
        pids = node.fleet.pids(region)
        return pids and parts_reported(job.id) >= 1 and queue_depth(node, tasks)[1] >= 1 and pids
    victim, = wait_for(mid_copy, timeout=120, interval=0.05, what="a part reported while parts are in flight")
    os.kill(victim, signal.SIGKILL)   # the only worker: every lease in flight was its own

    done = wait_finished(node.service, job.id, timeout=300)
    assert done.state == "complete", (done.state, done.error)
    assert victim not in node.fleet.pids(region) and node.fleet.pids(region), "the fleet replaced the worker"
    logged = [line.message for line in JobLog.select().where(JobLog.job == job.id)]
    assert any(f"worker process {victim} exited with code -9" in line for line in logged), logged
    total = sum(BIG.values())
    assert (done.objects_total, done.objects_done, done.objects_failed) == (len(BIG), len(BIG), 0)
    assert done.bytes_total == done.bytes_done == total
    uploads = list(Upload.select().where(Upload.job == job.id))
    assert sorted(u.key for u in uploads) == sorted(BIG)
    for upload in uploads:
        assert not upload.failed
        assert upload.parts_done == upload.parts_total == -(-BIG[upload.key] // (5 * MiB))
        parts = list(Part.select().where(Part.upload == upload).order_by(Part.part_number))
        assert [p.part_number for p in parts] == list(range(1, upload.parts_total + 1))
        assert sum(p.size for p in parts) == BIG[upload.key]
    destination["check"](objects)
