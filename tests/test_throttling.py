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
    assert any("retried (SlowDown×" in line for line in logged(job)), logged(job)
    for key, body in objects.items():
        copied = client.get_object(Bucket=dest, Key=key)["Body"].read()
        assert hashlib.md5(copied).digest() == hashlib.md5(body).digest(), key


def test_an_object_throttled_on_every_try_fails_alone_and_its_batch_moves_on(buckets, s3_env, head_node):
    # every write of one object's copy is throttled: it alone is reported failed (after the queue's
    # redeliveries of a task of its own), the other 39 of its batch are moved, and its source stays
    source, dest = buckets
    client = s3_env.client()
    job, objects, poison = move_with_one_object_always_throttled(buckets, s3_env, head_node, prefix="m", count=40,
                                                                 method="PUT", bucket=dest)
    assert job.state == "complete_with_warnings", job.error
    assert (job.objects_done, job.objects_failed, job.objects_deleted) == (39, 1, 39)
    failed = failures(job)
    assert [(key, kind) for key, kind, _ in failed] == [(poison, "copy")], failed
    assert "gave up after 2 attempt(s)" in failed[0][2] and "SlowDown" in failed[0][2], failed
    assert any(f"{poison} not copied, sent again as task" in line for line in logged(job)), logged(job)
    assert_same_objects(client, dest, {key: body for key, body in objects.items() if key != poison})
    assert listed_keys(client, source) == [poison]
    assert client.get_object(Bucket=source, Key=poison)["Body"].read() == objects[poison]


def test_a_source_whose_delete_is_throttled_on_every_try_alone_is_reported_kept(buckets, s3_env, head_node):
    # every DELETE of one source is throttled: the other 29 sources go, and only that one is
    # reported kept (before, the whole delete batch was, though most of it had been deleted)
    source, dest = buckets
    client = s3_env.client()
    job, objects, stuck = move_with_one_object_always_throttled(buckets, s3_env, head_node, prefix="d", count=30,
                                                                method="DELETE", bucket=source)
    assert job.state == "complete_with_warnings", job.error
    assert (job.objects_done, job.objects_failed, job.objects_deleted, job.delete_failures) == (30, 0, 29, 1)
    kept = failures(job)
    assert [(key, kind) for key, kind, _ in kept] == [(stuck, "delete")], kept
    assert "source kept" in kept[0][2] and "SlowDown" in kept[0][2], kept
    assert any(f"{stuck} source not deleted, sent again as task" in line for line in logged(job)), logged(job)
    assert_same_objects(client, dest, objects)
    assert listed_keys(client, source) == [stuck]


def move_with_one_object_always_throttled(buckets, s3_env, head_node, *, prefix: str, count: int, method: str,
                                          bucket: str):
    """A move of ``count`` objects under ``prefix`` through a proxy that answers SlowDown to
    every ``method`` request for one of them in ``bucket``: the finished job, the objects, that key."""
    source, dest = buckets
    rng = random.Random(count)
    objects = {f"{prefix}/{n:02d}": rng.randbytes(rng.randint(1, 5000)) for n in range(count)}
    put_objects(s3_env.client(), source, objects)
    key = f"{prefix}/{count // 3:02d}"
    with FaultProxy(s3_env.endpoint_url, fault_rate=1.0, methods=[method], paths=[f"/{bucket}/{key}"]) as proxy:
        node = head_node(workers=1, MAX_RECEIVES=2, VISIBILITY_TIMEOUT=5)
        job = node.service.create(source=f"s3://{source}/{prefix}/", destination=f"s3://{dest}/{prefix}/",
                                  move=True, endpoint_url=proxy.endpoint_url)
        job = wait_finished(node.service, job.id, timeout=300)
        assert proxy.faults >= 2
    return job, objects, key


def logged(job) -> list[str]:
    return [line.message for line in JobLog.select().where(JobLog.job == job.id)]


def failures(job) -> list[tuple[str, str, str]]:
    """(key, kind, reason) of each object failure the job recorded."""
    return [(f.key, f.kind, f.reason) for f in ObjectFailure.select().where(ObjectFailure.job == job.id)]
