"""Stopping the processes a test started: SIGTERM, then SIGKILL after a grace period."""
from __future__ import annotations

import subprocess


def stop_process(process: subprocess.Popen, grace: float = 30.0) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
