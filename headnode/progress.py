"""A live progress bar for a job: objects, bytes, rate and ETA (rich)."""
from __future__ import annotations

import time

from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                           TransferSpeedColumn)

POLL_SECONDS = 0.1


def watch(service, job_id: int, *, quiet: bool = False):
    """Follow the job until it finishes; the finished job."""
    if quiet:
        return _wait(service, job_id)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns) as progress:
        bar = progress.add_task("planning", total=None)
        while True:
            job = service.get(job_id)
            settled = job.objects_done + job.objects_skipped + job.objects_failed
            progress.update(bar, completed=job.bytes_done, total=job.bytes_total if job.planning_done else None,
                            description=f"{job.state.replace('_', ' ')} {settled}/{job.objects_total} objects")
            if job.finished:
                return job
            time.sleep(POLL_SECONDS)


def _wait(service, job_id: int):
    while not (job := service.get(job_id)).finished:
        time.sleep(POLL_SECONDS)
    return job
