"""REST API for backups (admins): download one, and stage one to restore.

A backup downloaded here is always encrypted with the passphrase given: it
holds the server's secret key, and a browser download ends up in places
(download folders, synced drives) a server's disk does not. A restore is
verified completely when uploaded and refused with its reason if it fails any
check; a backup that passes is staged and applied when the server next starts
(``headnode.restore`` says why), so the answer tells the admin to restart it.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from flask import current_app, request, send_file
from flask_login import current_user
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from werkzeug.utils import secure_filename

from headnode import audit, auth, backup, restore
from headnode.accesserrors import Refused
from headnode.auth import allow, caller
from headnode.backupfile import BadBackup

blp = Blueprint("backup", __name__, url_prefix="/api/v1", description="Backup and restore (admins)")
MIN_PASSPHRASE = 10
RESTORE_MAX_BYTES = 8 << 30
RESTART_MESSAGE = ("The backup passed every check and is staged. Restart the CloudMover server to restore it: "
                   "the current database is replaced when the server starts (and kept beside it as "
                   "cloudmover.db.before-restore-…). Everyone signs in again afterwards.")


class BackupIn(Schema):
    passphrase = fields.String(required=True, load_only=True, metadata={
        "description": f"At least {MIN_PASSPHRASE} characters; needed to restore the backup"})


# one multipart body, a file and a field: described by hand (flask-smorest documents one location)
RESTORE_BODY = {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["backup"], "properties": {
        "backup": {"type": "string", "format": "binary", "description": "The backup file"},
        "passphrase": {"type": "string", "writeOnly": True,
                       "description": "The passphrase the backup was encrypted with"}}}}}}


class StagedOut(Schema):
    staged = fields.Dict(allow_none=True, metadata={
        "description": "The restore applied at the next start: the backup's manifest, who staged it, when"})
    message = fields.String()


def _node_config() -> dict:
    return current_app.extensions["cloudmover.node"].config


def _who() -> str:
    return caller().username


@blp.url_value_preprocessor
def _allow_large_upload(endpoint, values):
    """Let admins upload a backup larger than the app's request limit. This runs before the app's
    access check, whose CSRF check already reads (and size-checks) the form; callers who are not
    admins keep the normal limit, and are refused by that check anyway."""
    if endpoint == "backup.stage_restore" and request.method == "POST" and _is_admin():
        request.max_content_length = RESTORE_MAX_BYTES


def _is_admin() -> bool:
    bearer = auth._bearer_principal()
    if bearer is not None:
        return bool(bearer) and bearer.role == "admin"
    return bool(current_user.is_authenticated and current_user.role == "admin")


@blp.route("/backup", methods=["POST"])
@blp.arguments(BackupIn)
@blp.response(200, description="The backup file (encrypted)", content_type="application/octet-stream")
@allow("admin")
def download_backup(body):
    """A consistent backup of the database, taken while the server runs, encrypted with the passphrase."""
    passphrase = body["passphrase"]
    if len(passphrase) < MIN_PASSPHRASE:
        raise Refused(f"Choose a passphrase of at least {MIN_PASSPHRASE} characters: the backup holds the "
                      "server's secret key, and the passphrase is all that protects it.")
    config = _node_config()
    fd, name = tempfile.mkstemp(prefix=".download-", dir=config["DATA_DIR"])
    os.close(fd)
    out = Path(name)
    try:
        manifest = backup.create(config, out, passphrase=passphrase)
        handle = open(out, "rb")
    finally:
        out.unlink(missing_ok=True)   # the open handle keeps the data until it is sent
    audit.record(_who(), "backup_downloaded", detail=f"encrypted backup; {manifest['tables'].get('job', 0)} "
                                                     f"job(s), {manifest['tables'].get('user', 0)} user(s)")
    stamp = manifest["created_at"].replace("-", "").replace(":", "")
    return send_file(handle, mimetype="application/octet-stream", as_attachment=True,
                     download_name=f"cloudmover-backup-{stamp}.cmbackup", max_age=0)


@blp.route("/restore", methods=["GET"])
@blp.response(200, StagedOut)
@allow("admin")
def staged_restore():
    """The restore staged for the next start, if any."""
    staged = restore.staged(_node_config())
    return {"staged": staged, "message": RESTART_MESSAGE if staged else "No restore is staged."}


@blp.route("/restore", methods=["POST"])
@blp.doc(requestBody=RESTORE_BODY)
@blp.response(202, StagedOut)
@allow("admin")
def stage_restore():
    """Upload a backup to restore (multipart: the ``backup`` file and its ``passphrase``).

    It is checked completely; if it passes it is staged and applied when the server next starts,
    else it is refused with the reason and nothing changes. Refused while jobs are unfinished on
    this server."""
    config = _node_config()
    upload = request.files.get("backup")
    if upload is None:
        raise BadBackup("Attach the backup file as the 'backup' part of a multipart form.")
    source = secure_filename(upload.filename or "") or "uploaded backup"
    work = backup.work_dir(config, "upload")
    try:
        path = backup.private_file(work / "backup")
        upload.save(str(path))
        staged = restore.stage(config, path, request.form.get("passphrase") or None, actor=_who(),
                               source=source)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    audit.record(_who(), "restore_staged", source,
                 f"backup made {staged['manifest']['created_at']}; applied when the server restarts")
    return {"staged": staged, "message": RESTART_MESSAGE}


@blp.route("/restore", methods=["DELETE"])
@blp.response(204)
@allow("admin")
def cancel_restore():
    """Drop the staged restore: the server keeps its database when it restarts."""
    if restore.cancel_staged(_node_config()):
        audit.record(_who(), "restore_cancelled")
