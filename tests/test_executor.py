"""A worker's executor on real SeaweedFS: server-side copies of one task share the
worker's copy budget (bytes in flight), those a codec job makes of objects it moves
unchanged too, and a budget smaller than an object slows the copies down but never
stalls or skips one. An object that keeps failing is reported alone, its batch settled."""
from __future__ import annotations

import os
import threading
import time

import pytest

from pipeline import errors
from pipeline.credentials import Sealer
from pipeline.locations import parse_location
from pipeline.store import StoreCache, ref_from_spec
from support.budgets import RecordingBudget
from support.faultproxy import FaultProxy
from support.objects import assert_same_objects, put_objects
from worker.executor import Executor
from worker.strategies import MemoryBudget

KiB = 1 << 10


def copy_task(client, buckets, s3_env, objects: dict, sealer: Sealer, *, endpoint_url: str | None = None,
              **options) -> dict:
    source, _ = buckets
    specs = [parse_location(f"s3://{bucket}/", endpoint_url=endpoint_url or s3_env.endpoint_url).spec
             for bucket in buckets]
    heads = {key: client.head_object(Bucket=source, Key=key) for key in objects}
    return {"type": "CopyObjects", "job_id": 1, "task_id": "t1", **options,
            "source": ref_from_spec(specs[0], sealer), "destination": ref_from_spec(specs[1], sealer),
            "objects": [{"key": key, "dest_key": key, "size": len(body), "etag": heads[key]["ETag"].strip('"')}
                        for key, body in objects.items()]}


def test_copies_larger_than_the_copy_budget_all_land_and_the_budget_is_given_back(buckets, s3_env):
    source, dest = buckets
    client = s3_env.client()
    objects = {f"f/{i:02d}": os.urandom(300 * KiB if i % 3 == 0 else 40 * KiB) for i in range(24)}
    put_objects(client, source, objects)
    sealer = Sealer("x" * 32)
    task = copy_task(client, buckets, s3_env, objects, sealer)
    copying = MemoryBudget(100 * KiB)   # smaller than a third of the objects: they go one at a time
    executor = Executor(StoreCache(sealer), object_threads=8, memory=MemoryBudget(1 << 20), copying=copying)
    done = {}
    running = threading.Thread(target=lambda: done.update(event=executor.execute(task)), daemon=True)
    running.start()
    running.join(60)
    assert not running.is_alive(), "the copies stalled: the copy budget was not given back"
    executor.close()
    event = done["event"]
    assert event["failed"] == [] and sorted(c["key"] for c in event["copied"]) == sorted(objects)
    assert copying.in_use == 0
    assert_same_objects(client, dest, objects)


def test_what_a_codec_job_moves_unchanged_takes_its_share_of_the_copy_budget(buckets, s3_env):
    source, dest = buckets
    client = s3_env.client()
    objects = {f"notes/{i}.txt": os.urandom(10 * KiB + i) for i in range(5)}   # not images: moved as they are
    put_objects(client, source, objects)
    sealer = Sealer("x" * 32)
    copying = RecordingBudget(1 << 20)
    executor = Executor(StoreCache(sealer), object_threads=4, memory=MemoryBudget(1 << 20), copying=copying)
    event = executor.execute(copy_task(client, buckets, s3_env, objects, sealer, codec="compress"))
    executor.close()
    assert event["failed"] == [] and all(c["codec"] is None for c in event["copied"])
    assert sorted(copying.taken) == sorted(len(body) for body in objects.values())
    assert copying.in_use == 0
    assert_same_objects(client, dest, objects)


def test_a_batch_keeps_its_order_and_ends_at_its_first_error_with_nothing_left_running():
    executor = Executor(StoreCache(Sealer("x" * 32)), object_threads=2, memory=MemoryBudget(1 << 20),
                        copying=MemoryBudget(1 << 20))
    assert executor._each(lambda i: i * i, list(range(50))) == [i * i for i in range(50)]
    assert executor._each(lambda i: i, []) == []
    started, ended = [], []

    def copy(i):
        started.append(i)
        time.sleep(0.01)
        if i == 1:
            raise errors.TransientStoreError("copy 1: SlowDown")
        ended.append(i)
    with pytest.raises(errors.TransientStoreError, match="copy 1"):
        executor._each(copy, list(range(20)))
    # the objects after the error were never started (the task is delivered again), and every one
    # started had ended when the error was raised: nothing of this task still runs
    assert 2 <= len(started) < 20 and sorted(ended) == sorted(set(started) - {1})
    executor.close()


def test_an_object_that_keeps_failing_is_reported_alone_unless_nothing_of_its_batch_went_through(buckets, s3_env):
    source, dest = buckets
    client = s3_env.client()
    objects = {f"p/{i:02d}": os.urandom(2 * KiB) for i in range(12)}
    put_objects(client, source, objects)
    sealer = Sealer("x" * 32)
    executor = Executor(StoreCache(sealer), object_threads=8, memory=MemoryBudget(1 << 20),
                        copying=MemoryBudget(1 << 20))
    with FaultProxy(s3_env.endpoint_url, fault_rate=1.0, methods=["PUT"], paths=[f"/{dest}/p/05"]) as proxy:
        event = executor.execute(copy_task(client, buckets, s3_env, objects, sealer, endpoint_url=proxy.endpoint_url))
        assert sorted(c["key"] for c in event["copied"]) == sorted(k for k in objects if k != "p/05")
        [failure] = event["failed"]
        assert failure["key"] == "p/05" and failure["retryable"] and "SlowDown" in failure["reason"], failure
        # every write throttled: nothing of a batch goes through, and the queue is to deliver it again
        proxy.paths = None
        pair = {k: objects[k] for k in ("p/00", "p/01")}
        with pytest.raises(errors.TransientStoreError, match="SlowDown"):
            executor.execute(copy_task(client, buckets, s3_env, pair, sealer, endpoint_url=proxy.endpoint_url))
    executor.close()
    assert_same_objects(client, dest, {k: v for k, v in objects.items() if k != "p/05"})
