"""A live progress bar for a job: objects, bytes, rate and ETA (rich, loaded only to draw it)."""
from __future__ import annotations

POLL_SECONDS = 0.1   # the bar's refresh; the job's end is noticed at once (JobService.await_finish)


def watch(service, job_id: int, *, quiet: bool = False, refresh: float = POLL_SECONDS):
    """Follow the job until it finishes; the finished job. ``refresh``: seconds between the bar's
    updates (a head node across the network is asked less often)."""
    if quiet:
        return _wait(service, job_id)
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns) as progress:
        bar = progress.add_task("planning", total=None)
        while True:
            job = service.await_finish(job_id, timeout=refresh)
            settled = job.objects_done + job.objects_skipped + job.objects_failed
            progress.update(bar, completed=job.bytes_done, total=job.bytes_total if job.planning_done else None,
                            description=f"{job.state.replace('_', ' ')} {settled}/{job.objects_total} objects")
            if job.finished:
                return job


def transfer_text(nbytes: int, seconds: float) -> str:
    """How many bytes moved in how long, and the rate, as in "3,000,008 bytes in 0.09 s (34.4 MB/s)":
    a quick job's time and rate stay readable (with one decimal of a second and of MB/s, it
    read "0.0 s (0.0 MB/s)")."""
    text = f"{nbytes:,} bytes in {seconds:.2f} s" if seconds < 10 else f"{nbytes:,} bytes in {seconds:.1f} s"
    if seconds <= 0:
        return text
    rate = nbytes / seconds
    for unit, scale in (("GB/s", 1e9), ("MB/s", 1e6), ("kB/s", 1e3)):
        if rate >= scale:
            return f"{text} ({rate / scale:.1f} {unit})"
    return f"{text} ({rate:.0f} B/s)"


def _wait(service, job_id: int):
    while not (job := service.await_finish(job_id, timeout=1.0)).finished:
        pass
    return job
