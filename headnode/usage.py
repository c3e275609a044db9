"""What a job's workers actually used: the instance-hours of the ec2 fleet's
records for it, priced with the same table as the estimate. An instance that
served several jobs counts in each of them."""
from __future__ import annotations

from headnode.estimate import actual_usage
from headnode.models import Job, WorkerInstance
from headnode.pricing import price_table


def job_usage(job: Job, config: dict) -> dict | None:
    """The job's instance-hours and their cost, or None when no instance served it (local fleet)."""
    runs = WorkerInstance.runs_for(job.id)
    if not runs:
        return None
    return actual_usage(runs, region=job.region, table=price_table(config)).to_dict()
