"""A worker stopped with SIGTERM finishes the task in hand, then exits cleanly."""
from __future__ import annotations

import random
import signal

from headnode.models import Task, Upload
from support.waiting import wait_finished, wait_for

MiB = 1 << 20


def test_sigterm_lets_the_running_task_finish(tmp_path, head_node):
    source = tmp_path / "source"
    source.mkdir()
    rng = random.Random(11)
    blobs = {f"big-{n}.raw": rng.randbytes(30 * MiB) for n in range(2)}
    for name, data in blobs.items():
        (source / name).write_bytes(data)
    node = head_node(workers=1, MULTIPART_THRESHOLD=5 * MiB, PART_SIZE=5 * MiB, WORKER_THREADS=1,
                     OBJECT_THREADS=1)
    job = node.service.create(source=str(source), destination=str(tmp_path / "copy"))
    wait_for(lambda: Upload.select().where((Upload.job == job.id) & (Upload.parts_done > 0)).exists(),
             timeout=120, what="a first part to be copied")
    worker = node.fleet.processes("local")[0]
    worker.send_signal(signal.SIGTERM)

    assert worker.wait(timeout=60) == 0
    job = wait_finished(node.service, job.id)
    assert job.state == "complete"
    assert job.bytes_done == sum(len(b) for b in blobs.values())
    assert not Task.select().where((Task.job == job.id) & (Task.attempts > 1)).exists()
    for name, data in blobs.items():
        assert (tmp_path / "copy" / name).read_bytes() == data
