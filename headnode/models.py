"""The head node's tables (peewee), bound late through a DatabaseProxy.

A ``Task`` row is written before its message is published and doubles as the
event de-duplication record: an event for a task that is no longer open is
ignored, so a task delivered twice is counted once. Columns added to a model
after a database was created are added to it when it is opened (``connect``).
"""
from __future__ import annotations

import datetime as dt
import json

import peewee as pw

db = pw.DatabaseProxy()

JOB_STATES = ("queued", "planning", "running", "complete", "complete_with_warnings", "failed", "cancelled")
FINAL_STATES = ("complete", "complete_with_warnings", "failed", "cancelled")


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class JSONField(pw.TextField):
    def db_value(self, value):
        return None if value is None else json.dumps(value, separators=(",", ":"))

    def python_value(self, value):
        return None if value is None else json.loads(value)


class Base(pw.Model):
    class Meta:
        database = db


class Job(Base):
    name = pw.CharField(max_length=200)
    state = pw.CharField(default="queued", index=True)
    source_url = pw.TextField()
    destination_url = pw.TextField()
    source = JSONField()            # StoreRef (credentials sealed) + prefix
    destination = JSONField()
    options = JSONField()           # move, recursive, sync, tier, plan settings
    region = pw.CharField()         # the task queue the job's workers drain
    submitted_by = pw.CharField(null=True)
    created_at = pw.DateTimeField(default=now)
    started_at = pw.DateTimeField(null=True)
    finished_at = pw.DateTimeField(null=True)
    notified_at = pw.DateTimeField(null=True)   # outcome emailed (or tried): at most once (notifications)
    plan_marker = pw.TextField(null=True)     # last source key planned and persisted
    planning_done = pw.BooleanField(default=False)
    task_seq = pw.IntegerField(default=0)
    open_tasks = pw.IntegerField(default=0)
    objects_total = pw.IntegerField(default=0)
    bytes_total = pw.BigIntegerField(default=0)
    objects_done = pw.IntegerField(default=0)
    objects_skipped = pw.IntegerField(default=0)
    bytes_done = pw.BigIntegerField(default=0)
    objects_failed = pw.IntegerField(default=0)
    objects_deleted = pw.IntegerField(default=0)
    delete_failures = pw.IntegerField(default=0)
    retries = pw.IntegerField(default=0)
    error = pw.TextField(null=True)
    codec_objects = pw.IntegerField(default=0)            # objects the image codec encoded or decoded
    codec_bytes_read = pw.BigIntegerField(default=0)      # their bytes at the source
    codec_bytes_written = pw.BigIntegerField(default=0)   # their bytes at the destination
    largest_object = pw.BigIntegerField(default=0)        # bytes: the largest object planned (sizes workers)

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def codec_mode(self) -> str:
        return self.options.get("codec", "none")

    @property
    def keeps_source_etags(self) -> bool:
        """A sync job moving objects as they are: its copies of objects uploaded in parts are made
        in the same parts, so that they keep their source's ETag and the next sync can compare
        them (see worker.strategies.copy_keeping_parts). A codec job's copies differ anyway."""
        return bool(self.options["sync"]) and self.codec_mode == "none"

    @property
    def bytes_saved(self) -> int:
        """Bytes the image codec kept off the wire: the originals' size minus the containers'."""
        if self.codec_mode == "decompress":
            return self.codec_bytes_written - self.codec_bytes_read
        return self.codec_bytes_read - self.codec_bytes_written


class Task(Base):
    task_id = pw.CharField(primary_key=True)
    job = pw.ForeignKeyField(Job, backref="tasks", on_delete="CASCADE")
    type = pw.CharField()
    state = pw.CharField(default="pending", index=True)   # pending → queued → done | failed
    payload = JSONField()
    attempts = pw.IntegerField(default=0)
    last_error = pw.TextField(null=True)
    created_at = pw.DateTimeField(default=now)

    class Meta:
        # publishing counts a job's queued tasks and takes its oldest pending ones, event after event
        indexes = ((("job", "state", "created_at"), False),)


class Upload(Base):
    """A multipart copy in progress: its parts report here until complete."""
    job = pw.ForeignKeyField(Job, backref="uploads", on_delete="CASCADE")
    key = pw.TextField()
    dest_key = pw.TextField()
    upload_id = pw.TextField()
    object_size = pw.BigIntegerField()
    etag = pw.CharField(null=True)
    parts_total = pw.IntegerField()
    parts_done = pw.IntegerField(default=0)
    failed = pw.BooleanField(default=False)

    class Meta:
        indexes = ((("job", "upload_id"), True),)


class Part(Base):
    upload = pw.ForeignKeyField(Upload, backref="parts", on_delete="CASCADE")
    part_number = pw.IntegerField()
    etag = pw.CharField()
    size = pw.BigIntegerField()
    checksum = pw.CharField(null=True)

    class Meta:
        indexes = ((("upload", "part_number"), True),)


class ObjectFailure(Base):
    job = pw.ForeignKeyField(Job, backref="failures", on_delete="CASCADE")
    key = pw.TextField()
    reason = pw.TextField()
    kind = pw.CharField(default="copy")        # copy | delete (a warning: the source was kept)
    task_id = pw.CharField(null=True)
    retried = pw.BooleanField(default=False)
    created_at = pw.DateTimeField(default=now)


class JobLog(Base):
    job = pw.ForeignKeyField(Job, backref="log", on_delete="CASCADE")
    at = pw.DateTimeField(default=now)
    level = pw.CharField(default="info")
    message = pw.TextField()


class WorkerState(Base):
    worker_id = pw.CharField(primary_key=True)
    region = pw.CharField()
    state = pw.CharField()
    last_seen = pw.DateTimeField(default=now)
    tasks_done = pw.IntegerField(default=0)
    bytes_done = pw.BigIntegerField(default=0)
    first_seen = pw.DateTimeField(default=now)
    bytes_per_second = pw.FloatField(default=0.0)   # between its last two heartbeats


ROLES = ("admin", "wrangler", "viewer")
WORKER_PATHS = ("private", "public")


class User(Base):
    username = pw.CharField(unique=True, max_length=64)
    password_hash = pw.TextField()
    role = pw.CharField(default="viewer")            # admin | wrangler | viewer
    email = pw.CharField(null=True)
    active = pw.BooleanField(default=True)           # False: suspended
    must_change_password = pw.BooleanField(default=True)
    admin_assigned = pw.BooleanField(default=True)   # the password was set by an admin, never chosen
    password_strength = pw.IntegerField(default=0)   # zxcvbn score 0–4 of the current password
    session_epoch = pw.IntegerField(default=0)       # bumped on password change/suspension: old sessions end
    api_token_hash = pw.CharField(null=True, index=True)
    failed_signins = pw.IntegerField(default=0)
    locked_until = pw.DateTimeField(null=True)
    created_at = pw.DateTimeField(default=now)


class Folder(Base):
    """An S3 bucket (optionally a prefix of it) users may copy from and to."""
    name = pw.CharField(unique=True, max_length=100)
    bucket = pw.CharField()
    prefix = pw.CharField(default="")
    region = pw.CharField()
    endpoint_url = pw.CharField(null=True)           # S3-compatible stores; None: AWS
    access_type = pw.CharField(default="role")       # role | keys | temporary
    access_key_id = pw.CharField(null=True)
    sealed_secret = pw.TextField(null=True)          # secret key + session token, encrypted (Sealer)
    created_at = pw.DateTimeField(default=now)


class FolderGrant(Base):
    folder = pw.ForeignKeyField(Folder, backref="grants", on_delete="CASCADE")
    user = pw.ForeignKeyField(User, backref="grants", on_delete="CASCADE")

    class Meta:
        indexes = ((("folder", "user"), True),)


class RegionSettings(Base):
    """Where the workers of one AWS region run, and how they reach the head node."""
    region = pw.CharField(primary_key=True)
    vpc_id = pw.CharField()
    subnet_id = pw.CharField()
    head_node_path = pw.CharField(default="private")   # private | public IP of the head node
    updated_at = pw.DateTimeField(default=now)


class Setting(Base):
    """Small named settings (mail server…); secret values are sealed before they get here."""
    name = pw.CharField(primary_key=True)
    value = JSONField()


class AuditEvent(Base):
    at = pw.DateTimeField(default=now, index=True)
    actor = pw.CharField(null=True)        # username, or None for the system
    action = pw.CharField()                # signin, signin_failed, user_added, folder_changed, job_created…
    target = pw.CharField(null=True)
    detail = pw.TextField(null=True)
    address = pw.CharField(null=True)


class WorkerInstance(Base):
    """An EC2 worker instance of this head node (the ``ec2`` fleet): launched, or adopted
    from a previous run, until terminated. Its hours are what the jobs it served used."""
    instance_id = pw.CharField(primary_key=True)
    region = pw.CharField(index=True)
    instance_type = pw.CharField()
    jobs = JSONField(default=list)                   # ids of the jobs it was launched for or served
    launched_at = pw.DateTimeField(default=now)
    terminated_at = pw.DateTimeField(null=True, index=True)
    end_reason = pw.CharField(null=True)             # idle | surplus | leftover | stopped | gone

    @classmethod
    def runs_for(cls, job_id: int) -> list[tuple]:
        """(instance type, launched at, terminated at or None) of each instance that served
        job ``job_id``: what ``estimate.actual_usage`` bills."""
        return [(i.instance_type, i.launched_at, i.terminated_at) for i in cls.select() if job_id in i.jobs]


# The version of these tables as a whole: bump it whenever a table or column is added, changed or
# removed. Backups record it; a backup made by a newer schema is refused (headnode/backup.py), an
# older one is brought up to date when restored (``connect``'s migrations).
SCHEMA_VERSION = 1

MODELS = (Job, Task, Upload, Part, ObjectFailure, JobLog, WorkerState,
          User, Folder, FolderGrant, RegionSettings, Setting, AuditEvent, WorkerInstance)


def connect(path: str) -> pw.SqliteDatabase:
    """Open (and create) the SQLite database at ``path`` and bind the models to it."""
    database = pw.SqliteDatabase(path, pragmas={"journal_mode": "wal", "foreign_keys": 1,
                                                "busy_timeout": 30_000, "synchronous": "normal"},
                                 check_same_thread=False)
    db.initialize(database)
    database.connect(reuse_if_open=True)
    database.create_tables(MODELS)
    _add_new_columns(database)
    return database


def _add_new_columns(database: pw.SqliteDatabase) -> None:
    """Add the columns a model gained since the database file was created (with their defaults)."""
    for model in MODELS:
        table = model._meta.table_name
        present = {column.name for column in database.get_columns(table)}
        missing = [field for field in model._meta.sorted_fields if field.column_name not in present]
        if missing:
            from playhouse.migrate import SqliteMigrator, migrate   # loaded (6 ms) only when needed
            migrator = SqliteMigrator(database)
            migrate(*(migrator.add_column(table, field.column_name, field) for field in missing))


def log(job: Job, message: str, level: str = "info") -> None:
    JobLog.create(job=job, message=message, level=level)
