"""A task that keeps failing ends in the dead-letter queue and its objects are
recorded as failed in the job; a malformed task does not stop a worker."""
from __future__ import annotations

import logging

import pytest

from conftest import bus_config
from headnode.models import ObjectFailure
from pipeline import bus as busmod
from support.faultproxy import FaultProxy
from support.waiting import wait_finished, wait_for


@pytest.mark.parametrize("bus_kind", ["sqlite", "sqs"])
def test_a_task_failing_on_every_delivery_is_recorded_as_failed(bus_kind, buckets, s3_env, head_node, tmp_path,
                                                                request):
    source, dest = buckets
    client = s3_env.client()
    keys = [f"stuck/{n}" for n in range(5)]
    for key in keys:
        client.put_object(Bucket=source, Key=key, Body=key.encode())
    moto = request.getfixturevalue("moto") if bus_kind == "sqs" else None
    # every write is throttled: each delivery of the copy task exhausts its retries
    with FaultProxy(s3_env.endpoint_url, fault_rate=1.0, methods=["PUT"]) as proxy:
        node = head_node(workers=1, MAX_RECEIVES=2, VISIBILITY_TIMEOUT=5, **bus_config(bus_kind, tmp_path, moto))
        job = node.service.create(source=f"s3://{source}/stuck/", destination=f"s3://{dest}/out/",
                                  endpoint_url=proxy.endpoint_url)
        job = wait_finished(node.service, job.id, timeout=300)

    assert job.state == "failed" and job.objects_failed == len(keys) and job.objects_done == 0
    failures = {f.key: f.reason for f in ObjectFailure.select().where(ObjectFailure.job == job.id)}
    assert sorted(failures) == keys
    assert all("gave up after" in reason and "SlowDown" in reason for reason in failures.values()), failures
    assert client.list_objects_v2(Bucket=dest).get("KeyCount", 0) == 0
    assert sorted(o["Key"] for o in client.list_objects_v2(Bucket=source)["Contents"]) == keys


def test_a_malformed_task_is_set_aside_and_the_worker_carries_on(buckets, s3_env, head_node, caplog):
    source, dest = buckets
    s3_env.client().put_object(Bucket=source, Key="after/ok", Body=b"ok")
    node = head_node(workers=1, ENDPOINT_URL=s3_env.endpoint_url)
    node.bus.publish_raw(busmod.task_queue("us-east-1"), '{"type": "CopyObjects", "garbage": true}')
    with caplog.at_level(logging.ERROR, logger="cloudmover.aggregator"):
        job = node.service.create(source=f"s3://{source}/after/", destination=f"s3://{dest}/after/")
        assert wait_finished(node.service, job.id).state == "complete"
        assert s3_env.client().get_object(Bucket=dest, Key="after/ok")["Body"].read() == b"ok"
        wait_for(lambda: any("dead-lettered message of no known task" in r.getMessage()
                             and "garbage" in r.getMessage() for r in caplog.records),
                 timeout=30, what="the head node to report the set-aside task")
