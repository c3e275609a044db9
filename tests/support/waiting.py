"""Polling with a timeout: every wait in the tests has one."""
from __future__ import annotations

import time


def wait_for(predicate, *, timeout: float = 120.0, interval: float = 0.2, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def wait_finished(service, job_id: int, timeout: float = 240.0):
    return wait_for(lambda: (job := service.get(job_id)).finished and job, timeout=timeout,
                    what=f"job {job_id} to finish")
