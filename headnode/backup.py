"""Backups of the head node, and checking one before it is restored.

A backup is a consistent copy of the database taken while the server keeps
running (SQLite's online backup API, from the live database: one read
transaction, so writers carry on under WAL), with a manifest (format, CloudMover
and schema versions, when, each table's row count, the SHA-256 of the copy)
and the node's secret key, packed into one file (``backupfile``).

The secret key is in the backup because folder secrets and the mail password
are sealed with it: without it a restored server could not open them. So a
backup is as sensitive as the server itself. It is always written mode 0600,
and encrypted with a passphrase when one is given (the API and the web UI
require one; the CLI warns without one).

``verify`` checks a backup completely before anything is changed: it opens it
(passphrase, integrity), reads its manifest, refuses a newer schema, compares
the checksum, runs SQLite's integrity check, looks for the tables every schema
has, compares row counts, and tries the secret key on the folders' secrets.
Restoring what it returns is ``restore``'s business.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import sqlite3
import tempfile
from contextlib import closing
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from pipeline import errors
from pipeline.credentials import Sealer
from headnode import backupfile
from headnode.backupfile import BadBackup
from headnode.models import SCHEMA_VERSION

FORMAT = "cloudmover-backup"
FORMAT_VERSION = 1
MANIFEST, DATABASE, SECRET = "manifest.json", "cloudmover.db", "secret.key"
# every schema since the first has these tables; later ones may add more (created on restore)
TABLES_SINCE_SCHEMA_1 = ("job", "task", "upload", "part", "objectfailure", "joblog", "workerstate", "user",
                         "folder", "foldergrant", "regionsettings", "setting", "auditevent")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class BackupFailed(errors.PipelineError):
    """A backup could not be made (the database is missing or damaged)."""
    code = "backup_failed"


@dataclass
class Verified:
    """A backup that passed every check, opened into ``work`` (removed by ``discard``)."""
    manifest: dict
    database: Path
    secret: str = field(repr=False)
    work: Path

    def discard(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


def node_secret(config: dict) -> str:
    """The secret the node seals with: configured, or DATA_DIR/secret.key."""
    if config.get("SECRET_KEY"):
        return config["SECRET_KEY"]
    path = Path(config["DATA_DIR"]) / SECRET
    if not path.exists():
        raise BackupFailed(f"{config['DATA_DIR']} has no secret key: it is not a CloudMover data directory "
                           "(or the server never started there).")
    return path.read_text().strip()


def work_dir(config: dict, purpose: str) -> Path:
    """A private scratch directory in DATA_DIR (it holds decrypted copies)."""
    os.makedirs(config["DATA_DIR"], mode=0o700, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{purpose}-", dir=config["DATA_DIR"]))


def private_file(path: Path) -> Path:
    """Create (or empty) ``path`` with mode 0600, so what is written there is never readable by others."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)
    return path


# -- making a backup ---------------------------------------------------------------------------
def create(config: dict, out: Path, *, passphrase: str | None) -> dict:
    """Write a backup of the node's database to ``out`` (mode 0600); return its manifest."""
    secret = node_secret(config)
    work = work_dir(config, "backup")
    try:
        snapshot = work / DATABASE
        take_snapshot(Path(config["DATABASE"]), snapshot)
        manifest = _manifest(snapshot)
        (private_file(work / MANIFEST)).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        (private_file(work / SECRET)).write_text(secret)
        plain = private_file(work / "backup.tar.gz")
        backupfile.pack({MANIFEST: work / MANIFEST, DATABASE: snapshot, SECRET: work / SECRET}, plain)
        partial = private_file(out.with_name(f".{out.name}.partial-{os.getpid()}"))
        try:
            if passphrase:
                backupfile.encrypt(plain, partial, passphrase)
            else:
                shutil.copyfile(plain, partial)
            fsync(partial)
            os.replace(partial, out)
        finally:
            partial.unlink(missing_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return manifest


def take_snapshot(database: Path, snapshot: Path) -> None:
    """Copy the live database into ``snapshot`` in one step of SQLite's backup API: a single read
    transaction, so the copy is consistent and the server's writers are not held up (WAL)."""
    if not database.is_file():
        raise BackupFailed(f"There is no CloudMover database at {database}.")
    with closing(sqlite3.connect(database, timeout=30)) as source, \
            closing(sqlite3.connect(private_file(snapshot))) as target:
        source.backup(target)
        target.execute("PRAGMA journal_mode=DELETE")   # one self-contained file
        problems = _integrity(target)
    if problems:
        raise BackupFailed(f"The server's database is damaged, so no backup was made: {problems}")


def _manifest(snapshot: Path) -> dict:
    with closing(sqlite3.connect(snapshot)) as conn:
        tables = {name: conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
                  for name in _tables(conn)}
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "cloudmover_version": _version(),
            "schema_version": SCHEMA_VERSION,
            "created_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "database": {"member": DATABASE, "bytes": snapshot.stat().st_size,
                         "sha256": backupfile.sha256(snapshot)},
            "tables": tables}


# -- checking one -------------------------------------------------------------------------------
def verify(config: dict, path: Path, passphrase: str | None) -> Verified:
    """Open and check the backup at ``path`` without changing anything; ``BadBackup`` says why not."""
    work = work_dir(config, "restore")
    try:
        archive = path
        if backupfile.is_encrypted(path):
            archive = private_file(work / "backup.tar.gz")
            backupfile.decrypt(path, archive, passphrase)
        members = {name: private_file(work / name) for name in (MANIFEST, DATABASE, SECRET)}
        backupfile.unpack(archive, members)
        manifest = _read_manifest(members[MANIFEST])
        if backupfile.sha256(members[DATABASE]) != manifest["database"]["sha256"]:
            raise BadBackup("The backup file is damaged: its database does not match the checksum in its "
                            "manifest.")
        _check_database(members[DATABASE], manifest)
        secret = members[SECRET].read_text().strip()
        _check_secret(members[DATABASE], secret)
        return Verified(manifest=manifest, database=members[DATABASE], secret=secret, work=work)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError("not a CloudMover manifest")
        version, schema = int(manifest["format_version"]), int(manifest["schema_version"])
        digest, tables = manifest["database"]["sha256"], manifest["tables"]
        str(manifest["created_at"]), str(manifest["cloudmover_version"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise BadBackup("This is not a CloudMover backup: its manifest is missing or unreadable.") from None
    if version > FORMAT_VERSION:
        raise BadBackup(f"This backup was made by a newer CloudMover (backup format {version}; this server "
                        f"reads format {FORMAT_VERSION}): upgrade first, then restore it.")
    if schema > SCHEMA_VERSION:
        raise BadBackup(f"This backup was made by a newer CloudMover (schema {schema}; this server has schema "
                        f"{SCHEMA_VERSION}): upgrade first, then restore it.")
    if schema < 1 or not isinstance(digest, str) or not SHA256.match(digest) or not isinstance(tables, dict):
        raise BadBackup("This is not a CloudMover backup: its manifest is missing or unreadable.")
    return manifest


def _check_database(database: Path, manifest: dict) -> None:
    try:
        with closing(sqlite3.connect(_read_only(database), uri=True)) as conn:
            problems = _integrity(conn)
            if problems:
                raise BadBackup(f"The database in the backup is damaged: {problems}")
            present = set(_tables(conn))
            missing = sorted(set(TABLES_SINCE_SCHEMA_1) - present)
            if missing:
                raise BadBackup(f"The database in the backup is not a CloudMover database: it lacks the "
                                f"table(s) {', '.join(missing)}.")
            counts = {name: conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in present}
    except sqlite3.DatabaseError as exc:
        raise BadBackup(f"The database in the backup is damaged: {exc}.") from None
    if counts != manifest["tables"]:
        raise BadBackup("The backup file is inconsistent: its manifest's row counts do not match its database.")


def _check_secret(database: Path, secret: str) -> None:
    """The backup's key must open the folders' sealed secrets, or a restored server could not."""
    if not secret:
        raise BadBackup("The backup file is damaged: its secret key is empty.")
    sealer = Sealer(secret)
    with closing(sqlite3.connect(_read_only(database), uri=True)) as conn:
        sealed = [row[0] for row in conn.execute("SELECT sealed_secret FROM folder WHERE sealed_secret IS NOT NULL")]
    for token in sealed:
        try:
            sealer.unseal(token)
        except errors.PermanentError:
            raise BadBackup("The backup file is inconsistent: its secret key does not open the folders' "
                            "secrets.") from None


# -- helpers ------------------------------------------------------------------------------------
def _integrity(conn: sqlite3.Connection) -> str | None:
    rows = [row[0] for row in conn.execute("PRAGMA integrity_check(20)")]
    return None if rows == ["ok"] else "; ".join(rows)


def _tables(conn: sqlite3.Connection) -> list[str]:
    return [row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]


def _read_only(database: Path) -> str:
    return database.resolve().as_uri() + "?mode=ro"


def _version() -> str:
    try:
        return metadata.version("cloudmover")
    except metadata.PackageNotFoundError:
        return "unknown"


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
