"""A head node (``cloudmover up``) stopped or SIGKILLed in the middle of planning a
job is started again on the same data directory: it resumes planning after the
last persisted listing position, and the job completes with every object copied
exactly once."""
from __future__ import annotations

import collections
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import requests

from localservers import free_ports
from support.objects import assert_same_objects, put_objects, small_and_large
from support.waiting import wait_for

OBJECTS = 1500


class Served:
    """One ``cloudmover up`` process, leader of its own process group (its workers join it)."""

    def __init__(self, data_dir: Path, log: Path, env: dict):
        self.data_dir, self.port = data_dir, free_ports(1)[0]
        with open(log, "ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "headnode.cli", "up", "--data-dir", str(data_dir), "--port", str(self.port)],
                env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=output, start_new_session=True)
        self.base = f"http://127.0.0.1:{self.port}/api/v1"
        wait_for(self._ready, timeout=60, what="the head node to serve its API")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {(data_dir / 'api.token').read_text().strip()}"

    def _ready(self) -> bool:
        assert self.process.poll() is None, f"the head node exited with {self.process.returncode}"
        try:
            return requests.get(f"{self.base}/openapi.json", timeout=5).status_code == 200
        except requests.ConnectionError:
            return False

    def worker_pids(self) -> list[int]:
        import psutil
        # cloudmover up → gunicorn's worker process (the head node) → worker processes
        return [p.pid for p in psutil.Process(self.process.pid).children(recursive=True)
                if "worker.main" in p.cmdline()]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()   # stops its workers too
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                pass
        try:   # whatever is left of its group: the head node itself, workers orphaned by a SIGKILL
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()


@pytest.fixture
def serve(tmp_path, s3_env):
    """Factory: ``cloudmover up`` on one data directory, with a tiny listing page so planning takes many steps,
    and a publishing window narrower than the planned tasks, so a restart also finds tasks never sent."""
    started = []
    env = {**os.environ, "CLOUDMOVER_TLS": "false", "CLOUDMOVER_LIST_PAGE_SIZE": "20", "CLOUDMOVER_PUBLISH_WINDOW": "1",
           "CLOUDMOVER_VISIBILITY_TIMEOUT": "5", "CLOUDMOVER_WORKER_THREADS": "2",
           "CLOUDMOVER_LOCAL_WORKERS": '{"express": 2, "plus": 2, "ultra": 2}'}

    def start() -> Served:
        started.append(Served(tmp_path / "data", tmp_path / f"headnode{len(started)}.log", env))
        return started[-1]

    yield start
    for served in started:
        served.stop()


def planning_state(data_dir: Path, job_id: int) -> tuple[str | None, int]:
    """(plan_marker, planning_done) of the job, read from the head node's database file."""
    with sqlite3.connect(f"file:{data_dir / 'cloudmover.db'}?mode=ro", uri=True, timeout=30) as db:
        return db.execute("SELECT plan_marker, planning_done FROM job WHERE id = ?", (job_id,)).fetchone()


def unsent_tasks(data_dir: Path, job_id: int) -> int:
    with sqlite3.connect(f"file:{data_dir / 'cloudmover.db'}?mode=ro", uri=True, timeout=30) as db:
        return db.execute("SELECT COUNT(*) FROM task WHERE job_id = ? AND state = 'pending'", (job_id,)).fetchone()[0]


def planned_keys(data_dir: Path, job_id: int) -> collections.Counter:
    with sqlite3.connect(f"file:{data_dir / 'cloudmover.db'}?mode=ro", uri=True, timeout=30) as db:
        rows = db.execute("SELECT payload FROM task WHERE job_id = ? AND type = 'CopyObjects'", (job_id,))
        return collections.Counter(o["key"] for (payload,) in rows for o in json.loads(payload)["objects"])


@pytest.mark.parametrize("ending", ["stopped", "head-node-killed", "machine-down"])
def test_a_head_node_ended_while_planning_resumes_after_restart(ending, serve, buckets, s3_env):
    source, dest = buckets
    client = s3_env.client()
    objects = small_and_large(21, small=OBJECTS - 1)
    put_objects(client, source, objects)
    first = serve()
    created = first.session.post(f"{first.base}/jobs", json={
        "source": f"s3://{source}/", "destination": f"s3://{dest}/", "endpoint_url": s3_env.endpoint_url}, timeout=30)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]

    def mid_plan():
        marker, done = planning_state(first.data_dir, job_id) or (None, 0)
        assert not done, "planning finished before the head node could be ended"
        # planning well ahead of the window: several tasks held back, not one about to be sent
        return marker is not None and unsent_tasks(first.data_dir, job_id) >= 3
    wait_for(mid_plan, timeout=120, interval=0.02, what="a persisted listing position and tasks held back")
    orphans = first.worker_pids()
    if ending == "stopped":   # planning ends with the listing page at hand, not with the job
        os.kill(first.process.pid, signal.SIGTERM)
    elif ending == "head-node-killed":
        os.kill(first.process.pid, signal.SIGKILL)   # the rest of the head node and its workers then stop
    else:
        os.killpg(first.process.pid, signal.SIGKILL)   # the machine went down: workers too
    first.process.wait(30)
    wait_for(lambda: not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                             for pid in orphans), timeout=60, what="the dead head node's workers to stop")
    marker, done = planning_state(first.data_dir, job_id)
    assert marker is not None and not done
    if ending != "stopped":   # (a stopping head node may still send some as its workers finish)
        assert unsent_tasks(first.data_dir, job_id) > 0, "the window held planned tasks back for the next head node"

    second = serve()
    # the new head node waits for what is left of the old one to stop before it plans (one per data directory)
    assert wait_for(lambda: len(second.worker_pids()) == 2, timeout=180, what="the new head node's workers")

    def finished():
        job = second.session.get(f"{second.base}/jobs/{job_id}", timeout=30).json()
        return job if job["state"] in ("complete", "complete_with_warnings", "failed", "cancelled") else None
    job = wait_for(finished, timeout=300, what=f"job {job_id} to finish")
    assert job["state"] == "complete", job
    assert job["objects_total"] == job["objects_done"] == len(objects)
    assert job["bytes_total"] == job["bytes_done"] == sum(len(b) for b in objects.values())
    planned = planned_keys(second.data_dir, job_id)
    assert set(planned) == set(objects) and set(planned.values()) == {1}, "every object planned exactly once"
    assert_same_objects(client, dest, objects)
