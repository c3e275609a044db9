"""Submitting a job through the REST API and waiting for it, as an integrator does."""
from __future__ import annotations

from support.waiting import wait_for

FINAL = ("complete", "complete_with_warnings", "failed", "cancelled")


def submit(api, source: str, destination: str, endpoint_url: str, **extra) -> dict:
    response = api.post("/jobs", json={"source": source, "destination": destination,
                                       "endpoint_url": endpoint_url, **extra})
    assert response.status_code == 201, response.text
    return response.json()


def wait_job(api, job_id: int, states=FINAL, timeout: float = 240.0) -> dict:
    def reached():
        job = api.get(f"/jobs/{job_id}").json()
        return job if job["state"] in states else None
    return wait_for(reached, timeout=timeout, what=f"job {job_id} to reach {states}")
