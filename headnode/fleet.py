"""The ``local`` fleet provider: worker processes on this machine.

While a region has unfinished jobs, it runs as many ``cloudmover-worker``
processes for that region as the jobs' delivery tiers ask for (the largest
tier wins; one machine gains nothing from more), and stops them with SIGTERM
once the region has been idle for ``idle_seconds``. A worker that died is
replaced on the next reconcile, and its death reported (to the jobs' logs).
"""
from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from pipeline.credentials import sealing_key
from headnode.demand import JobDemand   # no database or boto3: `cp` starts workers before loading those

log = logging.getLogger("cloudmover.fleet")


def local_fleet(config: dict) -> "LocalFleet | None":
    """The worker processes a head node with ``config`` runs (FLEET=local), or None.

    Workers get the head node's bus, secret and settings through the environment;
    ``config["SECRET_KEY"]`` must be set (``ensure_secret``).
    """
    if config["FLEET"] != "local":
        return None
    return LocalFleet(tier_sizes=config["LOCAL_WORKERS"], env=worker_env(config),
                      idle_seconds=float(config["LOCAL_IDLE_SECONDS"]), log_dir=f"{config['DATA_DIR']}/logs")


def worker_env(config: dict) -> dict[str, str]:
    """The environment a worker of this head node runs with (worker/main.py reads it), for
    local processes and, through their user data, EC2 instances alike."""
    return {"CLOUDMOVER_BUS_URL": config["BUS_URL"], "CLOUDMOVER_SEALING_KEY": sealing_key(config["SECRET_KEY"]),
           "CLOUDMOVER_QUEUE_PREFIX": config["QUEUE_PREFIX"],
           "CLOUDMOVER_BUS_OPTIONS": json.dumps(config["BUS_OPTIONS"]),
           "CLOUDMOVER_VISIBILITY_TIMEOUT": str(config["VISIBILITY_TIMEOUT"]),
           "CLOUDMOVER_MAX_RECEIVES": str(config["MAX_RECEIVES"]),
           "CLOUDMOVER_WORKER_THREADS": str(config["WORKER_THREADS"]),
           "CLOUDMOVER_OBJECT_THREADS": str(config["OBJECT_THREADS"]),
           "CLOUDMOVER_COPY_BYTES_IN_FLIGHT": str(config["COPY_BYTES_IN_FLIGHT"]),
           "CLOUDMOVER_CODEC_MAX_OBJECT": str(config["CODEC_MAX_OBJECT"]),
           "CLOUDMOVER_MESSAGE_RETENTION": str(config["MESSAGE_RETENTION"]),
           "CLOUDMOVER_EVENTS_TOPIC": config["EVENTS_TOPIC"]}   # where events go (docs/aws-queues.md)


@dataclass
class _Region:
    processes: list = field(default_factory=list)
    idle_since: float | None = None


class LocalFleet:
    def __init__(self, *, tier_sizes: dict, env: dict, idle_seconds: float = 15.0, log_dir: str | None = None):
        self.tier_sizes, self.env, self.idle_seconds, self.log_dir = tier_sizes, env, idle_seconds, log_dir
        self._regions: dict[str, _Region] = {}
        self._lock = threading.Lock()   # reconcile runs from housekeeping and from `cp` starting workers early
        self._closed = False            # once stopped, a late reconcile must not start workers

    def reconcile(self, demand: dict[str, list[JobDemand]]) -> list[tuple[str, str]]:
        """``demand``: region -> its unfinished jobs (only their tiers count here).
        (region, what) of each worker that died."""
        with self._lock:
            return [] if self._closed else self._reconcile(demand)

    def _reconcile(self, demand: dict[str, list[JobDemand]]) -> list[tuple[str, str]]:
        now = time.monotonic()
        deaths = []
        for region in set(self._regions) | set(demand):
            state = self._regions.setdefault(region, _Region())
            for process in state.processes:
                if process.poll() is not None:
                    deaths.append((region, f"worker process {process.pid} exited with code {process.returncode} "
                                           f"(log: {self.log_dir}/worker-{region}.log); replacing it"))
            state.processes = [p for p in state.processes if p.poll() is None]
            jobs = demand.get(region)
            if jobs:
                state.idle_since = None
                wanted = max(int(self.tier_sizes[job.tier]) for job in jobs)
                while len(state.processes) < wanted:
                    state.processes.append(self._start(region))
            elif state.processes:
                state.idle_since = state.idle_since or now
                if now - state.idle_since >= self.idle_seconds:
                    self._stop(state.processes)
                    state.processes = []
        return deaths

    def processes(self, region: str) -> list[subprocess.Popen]:
        """The live worker processes of ``region``."""
        state = self._regions.get(region)
        return [p for p in state.processes if p.poll() is None] if state else []

    def pids(self, region: str) -> list[int]:
        return [p.pid for p in self.processes(region)]

    def stop_all(self) -> None:
        with self._lock:
            self._closed = True
            for state in self._regions.values():
                self._stop(state.processes)
                state.processes = []

    def _start(self, region: str) -> subprocess.Popen:
        output = subprocess.DEVNULL
        if self.log_dir:
            os.makedirs(self.log_dir, exist_ok=True)
            output = open(os.path.join(self.log_dir, f"worker-{region}.log"), "ab")
        process = subprocess.Popen([sys.executable, "-m", "worker.main", "--region", region],
                                   env={**os.environ, **self.env, "CLOUDMOVER_PARENT_PID": str(os.getpid())},
                                   stdout=output, stderr=output,
                                   stdin=subprocess.DEVNULL)
        if output is not subprocess.DEVNULL:
            output.close()
        log.info("started worker process %d for region %s", process.pid, region)
        return process

    @staticmethod
    def _stop(processes: list, timeout: float = 30.0) -> None:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in processes:
            if not wait_exit(process, max(0.1, deadline - time.monotonic())):
                process.kill()
                process.wait()


def wait_exit(process: subprocess.Popen, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``process`` to end; whether it did.

    ``Popen.wait(timeout)`` polls with sleeps growing to 50 ms, which a short
    ``cloudmover cp`` pays at its end; a pidfd wakes as soon as the process exits.
    """
    try:
        handle = os.pidfd_open(process.pid)
    except (AttributeError, OSError):   # no pidfds (not Linux 5.3+), or already reaped
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    try:
        select.select([handle], [], [], timeout)
    finally:
        os.close(handle)
    return process.poll() is not None
