"""A store that answers 503 SlowDown to a share of requests (acceptance 6)."""
from __future__ import annotations

import hashlib
import random

from headnode.models import JobLog
from support.faultproxy import FaultProxy
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
