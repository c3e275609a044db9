"""A store that answers 503 SlowDown to a share of requests (acceptance 6), or to every
write of one object."""
from __future__ import annotations

import hashlib
import random

from headnode.models import JobLog, ObjectFailure
from support.faultproxy import FaultProxy
from support.objects import assert_same_objects, listed_keys, put_objects
from support.waiting import wait_finished

MiB = 1 << 20


def test_job_completes_through_slowdowns_and_logs_the_retries(buckets, s3_env, head_node):
    source, dest = buckets
    client = s3_env.client()
    rng = random.Random(6)
    objects = {f"t/{n:03d}": rng.randbytes(rng.randint(0, 20_000)) for n in range(150)}
    objects["t/large"] = rng.randbytes(12 * MiB)
    for key, body in objects.items():
        client.put_object(Bucket=source, Key=key, Body=body)

    with FaultProxy(s3_env.endpoint_url, fault_rate=0.2, seed=3) as proxy:
        node = head_node(workers=2, MULTIPART_THRESHOLD=5 * MiB, PART_SIZE=5 * MiB)
        job = node.service.create(source=f"s3://{source}/t/", destination=f"s3://{dest}/t/",
                                  endpoint_url=proxy.endpoint_url)
        job = wait_finished(node.service, job.id)
        assert proxy.faults > 0

    assert job.state == "complete", job.error
    assert job.objects_done == len(objects) and job.retries > 0
    logged = [line.message for line in JobLog.select().where(JobLog.job == job.id)]
    assert any("retried (SlowDown×" in line for line in logged), logged
    for key, body in objects.items():
        copied = client.get_object(Bucket=dest, Key=key)["Body"].read()
        assert hashlib.md5(copied).digest() == hashlib.md5(body).digest(), key


def test_an_object_throttled_on_every_try_fails_alone_and_its_batch_moves_on(buckets, s3_env, head_node):
    # one object of a 40-object batch is throttled on every write: it alone is reported failed
    # (after the queue's redeliveries of a task of its own), the other 39 are moved, and its
    # source stays where it was
    source, dest = buckets
    client = s3_env.client()
    rng = random.Random(8)
    objects = {f"m/{n:02d}": rng.randbytes(rng.randint(1, 5000)) for n in range(40)}
    put_objects(client, source, objects)
    poison = "m/17"

    with FaultProxy(s3_env.endpoint_url, fault_rate=1.0, methods=["PUT"], paths=[f"/{dest}/{poison}"]) as proxy:
        node = head_node(workers=1, MAX_RECEIVES=2, VISIBILITY_TIMEOUT=5)
        job = node.service.create(source=f"s3://{source}/m/", destination=f"s3://{dest}/m/", move=True,
                                  endpoint_url=proxy.endpoint_url)
        job = wait_finished(node.service, job.id, timeout=300)
        assert proxy.faults >= 2

    assert job.state == "complete_with_warnings", job.error
    assert (job.objects_done, job.objects_failed, job.objects_deleted) == (39, 1, 39)
    failures = [(f.key, f.reason) for f in ObjectFailure.select().where(ObjectFailure.job == job.id)]
    assert [key for key, _ in failures] == [poison], failures
    assert "gave up after 2 attempt(s)" in failures[0][1] and "SlowDown" in failures[0][1], failures
    logged = [line.message for line in JobLog.select().where(JobLog.job == job.id)]
    assert any(f"{poison} not copied, sent again as task" in line for line in logged), logged
    moved = {key: body for key, body in objects.items() if key != poison}
    assert_same_objects(client, dest, moved)
    assert listed_keys(client, source) == [poison]
    assert client.get_object(Bucket=source, Key=poison)["Body"].read() == objects[poison]


def test_a_source_whose_delete_is_throttled_on_every_try_alone_is_reported_kept(buckets, s3_env, head_node):
    # a move: every DELETE of one source is throttled; the other 29 sources go, and only that one
    # is reported kept (before, the whole delete batch was, though most of it had been deleted)
    source, dest = buckets
    client = s3_env.client()
    rng = random.Random(9)
    objects = {f"d/{n:02d}": rng.randbytes(rng.randint(1, 5000)) for n in range(30)}
    put_objects(client, source, objects)
    stuck = "d/04"

    with FaultProxy(s3_env.endpoint_url, fault_rate=1.0, methods=["DELETE"], paths=[f"/{source}/{stuck}"]) as proxy:
        node = head_node(workers=1, MAX_RECEIVES=2, VISIBILITY_TIMEOUT=5)
        job = node.service.create(source=f"s3://{source}/d/", destination=f"s3://{dest}/d/", move=True,
                                  endpoint_url=proxy.endpoint_url)
        job = wait_finished(node.service, job.id, timeout=300)
        assert proxy.faults >= 2

    assert job.state == "complete_with_warnings", job.error
    assert (job.objects_done, job.objects_failed, job.objects_deleted, job.delete_failures) == (30, 0, 29, 1)
    kept = [(f.key, f.kind, f.reason) for f in ObjectFailure.select().where(ObjectFailure.job == job.id)]
    assert [(key, kind) for key, kind, _ in kept] == [(stuck, "delete")], kept
    assert "source kept" in kept[0][2] and "SlowDown" in kept[0][2], kept
    logged = [line.message for line in JobLog.select().where(JobLog.job == job.id)]
    assert any(f"{stuck} source not deleted, sent again as task" in line for line in logged), logged
    assert_same_objects(client, dest, objects)
    assert listed_keys(client, source) == [stuck]
