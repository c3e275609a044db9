"""``cloudmover backup FILE`` and ``cloudmover restore FILE``, on the configured DATA_DIR.

A backup may be taken while the server runs. A restore is applied at once, and
only while no server uses the data directory; a running server takes a restore
through its web UI or API instead, and applies it when it next starts.
"""
from __future__ import annotations

import sys
from pathlib import Path

from pipeline import errors

EXIT_FAILED, EXIT_USAGE = 1, 2
UNENCRYPTED_WARNING = ("warning: this backup is not encrypted. It holds the server's secret key, which opens every "
                       "folder's credentials and the mail password: keep it as safe as the server itself, or "
                       "give --passphrase-file to encrypt it.")


def add_parsers(commands) -> None:
    backup = commands.add_parser("backup", help="write a backup of the head node's database (the server may run)")
    backup.add_argument("file", help="where to write the backup (mode 0600)")
    backup.set_defaults(run=_backup)
    restore = commands.add_parser("restore", help="restore a backup into a stopped head node's data directory")
    restore.add_argument("file", help="a backup written by `cloudmover backup` or downloaded from the web UI")
    restore.add_argument("--force", action="store_true",
                         help="restore even though jobs are unfinished in the current database")
    restore.set_defaults(run=_restore)
    for sub in (backup, restore):
        sub.add_argument("--passphrase-file", help="a file whose first line is the passphrase that encrypts "
                                                   "(or opens) the backup")
        sub.add_argument("--data-dir", help="the head node's data directory (default: the configured one)")


def _config(args) -> dict | None:
    from headnode.config import load_config
    try:
        return load_config({"DATA_DIR": args.data_dir} if args.data_dir else None)
    except ValueError as exc:
        print(f"cloudmover: configuration error: {exc}", file=sys.stderr)
        return None


def _passphrase(args) -> str | None:
    if not args.passphrase_file:
        return None
    text = Path(args.passphrase_file).read_text(encoding="utf-8")
    lines = text.splitlines()
    phrase = lines[0] if lines else ""
    if not phrase:
        raise ValueError(f"{args.passphrase_file} is empty: its first line is the passphrase")
    return phrase


def _prepare(args) -> tuple[dict, str | None] | None:
    """The configuration and passphrase of a backup or restore; None (after saying why) if unusable."""
    config = _config(args)
    if config is None:
        return None
    try:
        return config, _passphrase(args)
    except (OSError, ValueError) as exc:
        print(f"cloudmover: {exc}", file=sys.stderr)
        return None


def _backup(args) -> int:
    from headnode import backup

    prepared = _prepare(args)
    if prepared is None:
        return EXIT_USAGE
    config, passphrase = prepared
    out = Path(args.file).absolute()
    try:
        manifest = backup.create(config, out, passphrase=passphrase)
    except (errors.PipelineError, OSError) as exc:
        print(f"cloudmover: backup failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"backup written to {out} ({out.stat().st_size:,} bytes, "
          f"{'encrypted with the passphrase' if passphrase else 'NOT encrypted'}): {_summary(manifest)}")
    if not passphrase:
        print(UNENCRYPTED_WARNING, file=sys.stderr)
    return 0


def _restore(args) -> int:
    from headnode import restore

    prepared = _prepare(args)
    if prepared is None:
        return EXIT_USAGE
    config, passphrase = prepared
    path = Path(args.file)
    if not path.is_file():
        print(f"cloudmover: {path} is not a file", file=sys.stderr)
        return EXIT_USAGE
    try:
        done = restore.restore_now(config, path, passphrase, force=args.force)
    except errors.PipelineError as exc:
        print(f"cloudmover: restore refused: {exc}", file=sys.stderr)
        return EXIT_FAILED
    manifest = done["manifest"]
    print(f"restored {path} into {config['DATA_DIR']}: backup made {manifest['created_at']} by CloudMover "
          f"{manifest['cloudmover_version']} (schema {manifest['schema_version']}); {_summary(manifest)}")
    if done["interrupted_jobs"]:
        print(f"{len(done['interrupted_jobs'])} job(s) unfinished in the backup are marked interrupted (ids "
              f"{', '.join(map(str, done['interrupted_jobs']))}); submit them again to finish them")
    if done["previous_database"]:
        print(f"the previous database is kept as {done['previous_database']}")
    return 0


def _summary(manifest: dict) -> str:
    tables = manifest["tables"]
    return ", ".join(f"{tables.get(table, 0)} {label}" for table, label in (
        ("user", "user(s)"), ("folder", "folder(s)"), ("job", "job(s)"), ("joblog", "job log line(s)"),
        ("auditevent", "audit event(s)")))
