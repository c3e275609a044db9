"""Restoring a backup: staged while the server runs, applied while nothing uses the database.

A running server cannot swap its database under its own loops, request
threads and worker processes (nor its secret key, which they all hold), so a
restore happens in two steps. *Staging* verifies the backup completely
(``backup.verify``) and, only if it passes, puts the checked database, its
manifest and its secret key in ``DATA_DIR/restore-pending/``; nothing else is
touched. *Applying* happens when nothing uses the data directory: right away
for ``cloudmover restore`` on a stopped server, or when the server next starts
for a restore uploaded through the web UI or the API. Every head node holds a
shared lock on ``DATA_DIR/cloudmover.lock`` while it runs; applying needs the
exclusive lock, so it never happens under a running server.

Applying copies the staged database beside the live one, brings an older
schema up to date, marks the jobs that were unfinished when the backup was
taken as failed ("interrupted", with a log line: their queued tasks, their
workers and the queue itself are not in the backup, and the server the backup
came from may still be running them), records the restore in the audit log,
then swaps the file in with one rename (the previous database is kept as
``cloudmover.db.before-restore-<time>``) and installs the backup's secret key
(the previous one is kept the same way). A failure part-way leaves the staged
restore in place, and the next start applies it again.
"""
from __future__ import annotations

import datetime as dt
import gc
import json
import logging
import os
import shutil
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import peewee as pw

from headnode import audit, backup, backupfile, models
from headnode.accesserrors import Refused
from headnode.accounts import INITIAL_PASSWORD_FILE
from headnode.datadir import DataDirLock, staged_dir
from headnode.jobs import Conflict
from headnode.models import FINAL_STATES, MODELS, Job, Task, Upload

log = logging.getLogger("cloudmover.restore")
STAGED_INFO = "staged.json"
INTERRUPTED = ("interrupted: the job was still running when the backup restored here was taken, and it did "
               "not continue after the restore. Submit it again (with sync on, to skip the objects already "
               "copied).")


class RestoreRefused(Refused):
    code = "restore_refused"


def apply_at_start(config: dict) -> None:
    """A starting head node (holding the data directory) applies the restore staged for it;
    one its checks refuse is set aside, the database unchanged."""
    try:
        apply_staged(config)
    except RestoreRefused as exc:
        refused = _set_aside(config)
        log.error("the staged restore was not applied, the database is unchanged: %s (it is "
                  "kept in %s)", exc, refused)


# -- staging ------------------------------------------------------------------------------------
def stage(config: dict, path: Path, passphrase: str | None, *, actor: str | None, source: str,
          force: bool = False) -> dict:
    """Verify the backup at ``path`` and stage it; return what is staged (``staged``).
    Refuses, changing nothing, when the backup fails a check, when this server's configured
    SECRET_KEY could not open its secrets, or (unless ``force``) while jobs are unfinished here."""
    verified = backup.verify(config, path, passphrase)
    try:
        _check_secret_fits(config, verified.secret)
        running = [] if force else unfinished_jobs(config)
        if running:
            raise Conflict(f"{len(running)} job(s) are unfinished on this server (ids "
                           f"{', '.join(map(str, running[:20]))}): cancel them or let them finish, then restore. "
                           "Their tasks in the queue belong to the database a restore replaces.")
        _put_in_place(config, verified, {"actor": actor, "source": source, "staged_at": _utc()})
    finally:
        verified.discard()
    return staged(config)


def _put_in_place(config: dict, verified: backup.Verified, info: dict) -> None:
    """Write the staged restore beside its place, then rename it there (replacing one staged before)."""
    pending = backup.work_dir(config, "staging")
    try:
        shutil.move(verified.database, pending / backup.DATABASE)
        backup.private_file(pending / backup.SECRET).write_text(verified.secret)
        backup.private_file(pending / backup.MANIFEST).write_text(json.dumps(verified.manifest, sort_keys=True))
        backup.private_file(pending / STAGED_INFO).write_text(json.dumps(info))
        for name in (backup.DATABASE, backup.SECRET):
            backup.fsync(pending / name)
        shutil.rmtree(staged_dir(config), ignore_errors=True)
        os.rename(pending, staged_dir(config))
    except BaseException:
        shutil.rmtree(pending, ignore_errors=True)
        raise


def staged(config: dict) -> dict | None:
    """The restore staged for the next start: its manifest and who staged it when; None if none."""
    where = staged_dir(config)
    try:
        manifest = json.loads((where / backup.MANIFEST).read_text())
        info = json.loads((where / STAGED_INFO).read_text())
    except (OSError, ValueError):
        return None
    return {"manifest": manifest, **info}


def cancel_staged(config: dict) -> bool:
    where = staged_dir(config)
    if not where.exists():
        return False
    shutil.rmtree(where)
    return True


def unfinished_jobs(config: dict) -> list[int]:
    """Ids of the jobs not yet finished in the current database (none if it cannot be read)."""
    database = Path(config["DATABASE"])
    if not database.is_file():
        return []
    placeholders = ", ".join("?" for _ in FINAL_STATES)
    try:
        with closing(sqlite3.connect(database.resolve().as_uri() + "?mode=ro", uri=True, timeout=30)) as conn:
            return [row[0] for row in conn.execute(
                f"SELECT id FROM job WHERE state NOT IN ({placeholders}) ORDER BY id", FINAL_STATES)]
    except sqlite3.DatabaseError:
        return []


def pinned_secret(config: dict) -> str | None:
    """This server's SECRET_KEY when it comes from its configuration rather than DATA_DIR/secret.key
    (a restore cannot replace a configured key)."""
    configured = config.get("SECRET_KEY")
    if not configured:
        return None
    path = Path(config["DATA_DIR"]) / backup.SECRET
    if path.is_file() and path.read_text().strip() == configured:
        return None
    return configured


def _check_secret_fits(config: dict, secret: str) -> None:
    pinned = pinned_secret(config)
    if pinned is not None and pinned != secret:
        raise RestoreRefused(
            "This server's SECRET_KEY is set in its configuration (CLOUDMOVER_SECRET_KEY) and differs from the "
            "key of the server the backup was made on, so the folders' secrets in the backup could not be "
            "opened here. Remove that setting (the restore installs the backup's key in DATA_DIR/secret.key) "
            "or set it to the other server's key, then restore again.")


# -- applying -------------------------------------------------------------------------------------
def apply_staged(config: dict) -> dict:
    """Swap the staged backup in (the caller holds the exclusive lock); return what was restored."""
    where = staged_dir(config)
    manifest = json.loads((where / backup.MANIFEST).read_text())
    info = json.loads((where / STAGED_INFO).read_text())
    snapshot, secret = where / backup.DATABASE, (where / backup.SECRET).read_text().strip()
    if backupfile.sha256(snapshot) != manifest["database"]["sha256"]:
        raise RestoreRefused(f"The staged restore in {where} is damaged (its database does not match its "
                             "checksum); upload the backup again.")
    _check_secret_fits(config, secret)
    target = Path(config["DATABASE"])
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    incoming = target.with_name(f"{target.name}.restoring")
    try:
        shutil.copyfile(snapshot, backup.private_file(incoming))
        interrupted = _prepare(incoming, manifest, info)
        backup.fsync(incoming)
        previous = _swap_database(target, incoming, stamp)
    finally:
        incoming.unlink(missing_ok=True)
    if pinned_secret(config) is None:
        _install_secret(Path(config["DATA_DIR"]), secret, stamp)
    (Path(config["DATA_DIR"]) / INITIAL_PASSWORD_FILE).unlink(missing_ok=True)   # its user is gone
    shutil.rmtree(where)
    backup.fsync(target.parent)   # the rename itself
    log.warning("restored the backup %s made %s (CloudMover %s, schema %s); %d unfinished job(s) marked "
                "interrupted; the previous database is kept as %s", info.get("source"), manifest["created_at"],
                manifest["cloudmover_version"], manifest["schema_version"], len(interrupted), previous)
    return {"manifest": manifest, "interrupted_jobs": interrupted,
            "previous_database": str(previous) if previous else None}


def _prepare(database_path: Path, manifest: dict, info: dict) -> list[int]:
    """On the copy about to be swapped in: migrate an older schema, close unfinished jobs, audit."""
    database = pw.SqliteDatabase(str(database_path), pragmas={"foreign_keys": 1})
    try:
        with database.bind_ctx(MODELS):
            database.create_tables(MODELS)
            models._add_new_columns(database)
            with database.atomic():
                interrupted = [_interrupt(job) for job in Job.select().where(Job.state.not_in(FINAL_STATES))]
                audit.record(info.get("actor"), "backup_restored", info.get("source"),
                             f"backup made {manifest['created_at']} by CloudMover {manifest['cloudmover_version']} "
                             f"(schema {manifest['schema_version']}); {len(interrupted)} unfinished job(s) "
                             "marked interrupted")
    finally:
        database.close()
    return interrupted


def _interrupt(job: Job) -> int:
    was = job.state
    open_tasks = (Task.update(state="failed", last_error="interrupted by a restore")
                  .where((Task.job == job.id) & Task.state.in_(("pending", "queued"))).execute())
    uploads = (Upload.update(failed=True)
               .where((Upload.job == job.id) & (Upload.parts_done < Upload.parts_total) & ~Upload.failed).execute())
    job.state, job.error, job.finished_at, job.open_tasks = "failed", INTERRUPTED, models.now(), 0
    job.notified_at = job.finished_at   # the restore is an admin's doing, told in the log: no email
    job.save()
    models.log(job, f"{INTERRUPTED} (It was {was}: {job.objects_done} of {job.objects_total} object(s) "
                    f"copied, {open_tasks} task(s) not done.)", "error")
    if uploads:
        models.log(job, f"{uploads} multipart upload(s) were left incomplete at the destination; an S3 "
                        "lifecycle rule for incomplete multipart uploads removes them.", "warning")
    return job.id


def _swap_database(target: Path, incoming: Path, stamp: str) -> Path | None:
    """Rename ``incoming`` over ``target`` (one atomic step); the old file stays as a hard link."""
    previous = None
    if target.exists():
        _checkpoint(target)
        previous = target.with_name(f"{target.name}.before-restore-{stamp}")
        try:
            os.link(target, previous)
        except OSError:
            shutil.copy2(target, previous)
    for suffix in ("-wal", "-shm", "-journal"):   # they belong to the old file, never to the new one
        leftover = Path(f"{target}{suffix}")
        if leftover.exists():
            if previous is not None:
                os.replace(leftover, Path(f"{previous}{suffix}"))
            else:
                leftover.unlink()
    os.replace(incoming, target)
    return previous


def _checkpoint(target: Path, *, wait: float = 5.0) -> None:
    """Fold the old database's write-ahead log into it (so its kept copy is whole), if it can be read.

    The caller holds the data directory exclusively, so no other head node has it open; connections
    a stopped node of this process left to the garbage collector are given ``wait`` seconds to go."""
    deadline = time.monotonic() + wait
    while True:
        try:
            with closing(sqlite3.connect(target, timeout=5)) as conn:
                mode = conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                return   # damaged: its log files move aside with it
            mode = "busy"
        except sqlite3.DatabaseError:
            return
        if str(mode).lower() == "delete" or time.monotonic() >= deadline:
            break
        gc.collect()
        time.sleep(0.2)
    if str(mode).lower() != "delete":
        raise RestoreRefused(f"The database {target} is in use by another process; stop it and restore again.")


def _install_secret(data_dir: Path, secret: str, stamp: str) -> None:
    path = data_dir / backup.SECRET
    if path.is_file() and path.read_text().strip() == secret:
        return
    incoming = backup.private_file(data_dir / f".{backup.SECRET}.restoring")
    incoming.write_text(secret)
    backup.fsync(incoming)
    if path.exists():
        kept = data_dir / f"{backup.SECRET}.before-restore-{stamp}"
        try:
            os.link(path, kept)
        except OSError:
            shutil.copy2(path, kept)
    os.replace(incoming, path)


def _set_aside(config: dict) -> Path:
    refused = Path(config["DATA_DIR"]) / f"restore-refused-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}"
    os.rename(staged_dir(config), refused)
    return refused




def _utc() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def restore_now(config: dict, path: Path, passphrase: str | None, *, force: bool = False) -> dict:
    """``cloudmover restore``: verify, stage and apply at once, on a stopped server only."""
    lock = DataDirLock(config["DATA_DIR"])
    try:
        if not lock.exclusive():
            raise RestoreRefused(f"A CloudMover server is running on {config['DATA_DIR']}: stop it, then "
                                 "restore again (or restore from its web UI or API, which applies the backup "
                                 "when the server next starts). Nothing was changed.")
        stage(config, path, passphrase, actor="operator (cli)", source=path.name, force=force)
        try:
            return apply_staged(config)
        except RestoreRefused:
            cancel_staged(config)   # refused before anything changed: nothing waits for the next start
            raise
    finally:
        lock.release()
