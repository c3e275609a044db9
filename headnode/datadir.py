"""Holding the data directory: one head node per DATA_DIR.

Two head nodes on one database would plan the same jobs twice, so a head node
holds ``DATA_DIR/cloudmover.lock`` exclusively while it runs, and so does a
restore being applied (``restore.py``). Starting, a head node applies a restore
staged for it; the restore code loads only then, which keeps it off the start of
every ``cloudmover cp``.
"""
from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path

log = logging.getLogger("cloudmover.datadir")
LOCK_FILE = "cloudmover.lock"
STAGED = "restore-pending"   # a verified backup waiting for the next start (restore.py)


class DataDirLock:
    """``DATA_DIR/cloudmover.lock``: held by the running head node, or by a restore being applied."""

    def __init__(self, data_dir: str):
        os.makedirs(data_dir, mode=0o700, exist_ok=True)
        self._fd: int | None = os.open(Path(data_dir) / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)

    def exclusive(self) -> bool:
        """Take the exclusive lock if nothing else holds the directory; False if something does."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError as exc:   # a file system without locks: the database's own check still guards
            log.warning("cannot lock %s (%s); relying on SQLite to tell whether the database is in use",
                        LOCK_FILE, exc)
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)   # releases the lock
            self._fd = None


def staged_dir(config: dict) -> Path:
    return Path(config["DATA_DIR"]) / STAGED


def hold_data_dir(config: dict, *, wait: float = 300.0) -> DataDirLock:
    """For a head node starting on DATA_DIR: hold the directory, exclusively, until ``release``,
    waiting up to ``wait`` seconds for a previous head node to finish stopping (it lets its
    workers finish what they hold); then apply a restore staged for this start."""
    lock = DataDirLock(config["DATA_DIR"])
    try:
        deadline = time.monotonic() + wait
        if not lock.exclusive():
            log.warning("another head node holds %s: waiting up to %.0f s for it to stop", config["DATA_DIR"], wait)
        while not lock.exclusive():
            if time.monotonic() >= deadline:
                raise RuntimeError(f"another CloudMover head node is running on {config['DATA_DIR']}: stop it "
                                   "first (or give this one its own --data-dir)")
            time.sleep(0.2)
        if staged_dir(config).exists():
            from headnode.restore import apply_at_start

            apply_at_start(config)
    except BaseException:
        lock.release()
        raise
    return lock
