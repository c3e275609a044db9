"""Wire messages between the head node and workers.

Every message is a JSON object with ``schema_version`` and ``type``; the
``type`` selects a marshmallow schema below, and unknown fields are refused so
a typo in an integrator's message is reported instead of silently ignored.

Tasks (imperative: head node -> worker queue of a region):
  ``CopyObjects``        many small objects batched into one message
  ``CopyPart``           one part of a multipart copy
  ``CompleteMultipart``  closes a multipart copy once every part reported
  ``DeleteObjects``      removes move sources whose copies were verified

Events (past tense: worker/head node -> event stream):
  ``ObjectsCopied``, ``PartCopied``, ``ObjectsDeleted``, ``TaskFailed``,
  ``WorkerHeartbeat``, ``JobAccepted``, ``SubmissionRejected``

Submission (integrator -> submission queue): ``SubmitJob``.

The image codec option (``codec``: none, compress or decompress) was added to
version 1 additively: optional on ``SubmitJob`` (default ``none``) and on
``CopyObjects``, where the head node writes it only when it is not ``none``,
so plain copy tasks read exactly as before, and a worker that predates the
codec refuses a codec task (to the dead-letter queue) instead of copying it
the wrong way.
"""
from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from pipeline.errors import MalformedMessage

SCHEMA_VERSION = 1
TIERS = ("express", "plus", "ultra")
CODEC_MODES = ("none", "compress", "decompress")
MAX_BATCH_OBJECTS = 1000


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class Message(_Strict):
    schema_version = fields.Integer(
        required=True, validate=validate.Equal(SCHEMA_VERSION),
        metadata={"description": "Wire format version; this build speaks 1."})
    type = fields.String(required=True)


class StoreRef(_Strict):
    """Where objects live: an S3 bucket (any endpoint) or a local directory."""
    kind = fields.String(required=True, validate=validate.OneOf(["s3", "local"]))
    bucket = fields.String(required=True, validate=validate.Length(min=1),
                           metadata={"description": "S3 bucket, or root directory for local"})
    region = fields.String(load_default=None, allow_none=True)
    endpoint_url = fields.String(load_default=None, allow_none=True)
    credentials = fields.String(
        load_default=None, allow_none=True,
        metadata={"description": "Sealed (encrypted) credentials token; never plain text"})


class ObjectRef(_Strict):
    key = fields.String(required=True)
    dest_key = fields.String(required=True)
    size = fields.Integer(required=True, validate=validate.Range(min=0))
    etag = fields.String(load_default=None, allow_none=True)


class _Task(Message):
    job_id = fields.Integer(required=True)
    task_id = fields.String(required=True, validate=validate.Length(min=1, max=200))
    source = fields.Nested(StoreRef, required=True)
    destination = fields.Nested(StoreRef, required=True)


class CopyObjects(_Task):
    objects = fields.List(fields.Nested(ObjectRef), required=True,
                          validate=validate.Length(min=1, max=MAX_BATCH_OBJECTS))
    sync = fields.Boolean(load_default=False,
                          metadata={"description": "Skip objects already present with the same size and checksum"})
    codec = fields.String(validate=validate.OneOf(CODEC_MODES), metadata={
        "description": "Image codec stage: compress (images are stored encoded), decompress "
                       "(encoded objects are restored); absent means none"})


class CopyPart(_Task):
    key = fields.String(required=True)
    dest_key = fields.String(required=True)
    upload_id = fields.String(required=True)
    part_number = fields.Integer(required=True, validate=validate.Range(min=1, max=10000))
    offset = fields.Integer(required=True, validate=validate.Range(min=0))
    length = fields.Integer(required=True, validate=validate.Range(min=0))
    object_size = fields.Integer(required=True, validate=validate.Range(min=0))
    etag = fields.String(load_default=None, allow_none=True)


class PartRef(_Strict):
    part_number = fields.Integer(required=True, validate=validate.Range(min=1, max=10000))
    etag = fields.String(required=True)
    size = fields.Integer(required=True, validate=validate.Range(min=0))
    checksum = fields.String(load_default=None, allow_none=True)


class CompleteMultipart(_Task):
    key = fields.String(required=True)
    dest_key = fields.String(required=True)
    upload_id = fields.String(required=True)
    object_size = fields.Integer(required=True, validate=validate.Range(min=0))
    etag = fields.String(load_default=None, allow_none=True)
    parts = fields.List(fields.Nested(PartRef), required=True, validate=validate.Length(min=1))


class DeleteObjects(_Task):
    """Delete move sources; the worker re-checks each copy before deleting."""
    objects = fields.List(fields.Nested(ObjectRef), required=True,
                          validate=validate.Length(min=1, max=MAX_BATCH_OBJECTS))


class CopiedObject(_Strict):
    key = fields.String(required=True)
    dest_key = fields.String(required=True)
    size = fields.Integer(required=True)
    checksum = fields.String(load_default=None, allow_none=True,
                             metadata={"description": "Checksum verified on the copy, 'algorithm:value'"})
    skipped = fields.Boolean(load_default=False,
                             metadata={"description": "Sync mode: already present and identical"})
    written = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=0), metadata={
        "description": "Bytes written at the destination, when they differ from the bytes read (size): "
                       "an object the image codec encoded or decoded"})
    codec = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(["encoded", "decoded"]),
                          metadata={"description": "What the image codec did to this object, if anything"})
    note = fields.String(load_default=None, allow_none=True, metadata={
        "description": "Why a codec job moved this object unchanged (too large, already encoded, …)"})


class ObjectFailure(_Strict):
    key = fields.String(required=True)
    reason = fields.String(required=True)


class _Event(Message):
    job_id = fields.Integer(required=True)
    task_id = fields.String(required=True)
    worker_id = fields.String(load_default=None, allow_none=True)
    retries = fields.Integer(load_default=0,
                             metadata={"description": "Requests retried (throttling, transient errors)"})
    retry_codes = fields.Dict(keys=fields.String(), values=fields.Integer(), load_default=dict,
                              metadata={"description": "Retried requests by error code, e.g. SlowDown"})


class ObjectsCopied(_Event):
    copied = fields.List(fields.Nested(CopiedObject), required=True)
    failed = fields.List(fields.Nested(ObjectFailure), load_default=list,
                         metadata={"description": "Objects that failed permanently"})


class PartCopied(_Event):
    key = fields.String(required=True)
    upload_id = fields.String(required=True)
    part_number = fields.Integer(required=True)
    etag = fields.String(required=True)
    size = fields.Integer(required=True)
    checksum = fields.String(load_default=None, allow_none=True)


class ObjectsDeleted(_Event):
    deleted = fields.List(fields.String(), required=True)
    failed = fields.List(fields.Nested(ObjectFailure), load_default=list)


class TaskFailed(_Event):
    task_type = fields.String(required=True)
    reason = fields.String(required=True)
    retryable = fields.Boolean(required=True)
    attempt = fields.Integer(required=True, validate=validate.Range(min=1))
    keys = fields.List(fields.String(), load_default=list)


class WorkerHeartbeat(Message):
    worker_id = fields.String(required=True)
    region = fields.String(required=True)
    state = fields.String(required=True, validate=validate.OneOf(["idle", "busy", "stopping"]))
    tasks_done = fields.Integer(required=True)
    bytes_done = fields.Integer(required=True)
    sent_at = fields.Float(required=True, metadata={"description": "Unix time"})


class SubmitJob(Message):
    """A job an integrator sends to the submission queue."""
    request_id = fields.String(load_default=None, allow_none=True,
                               metadata={"description": "Echoed in the reply event"})
    name = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))
    source = fields.String(required=True, metadata={
        "description": "s3://bucket/prefix, folder:NAME/path or an absolute local path"})
    destination = fields.String(required=True)
    move = fields.Boolean(load_default=False)
    recursive = fields.Boolean(load_default=True)
    sync = fields.Boolean(load_default=False)
    tier = fields.String(load_default="express", validate=validate.OneOf(TIERS))
    codec = fields.String(load_default="none", validate=validate.OneOf(CODEC_MODES), metadata={
        "description": "Image codec: compress images in the source region before they travel, "
                       "decompress them in the destination region, or none"})
    endpoint_url = fields.String(load_default=None, allow_none=True)
    submitted_by = fields.String(load_default=None, allow_none=True)


class JobAccepted(Message):
    request_id = fields.String(load_default=None, allow_none=True)
    job_id = fields.Integer(required=True)


class SubmissionRejected(Message):
    request_id = fields.String(load_default=None, allow_none=True)
    reason = fields.String(required=True)
    errors = fields.Dict(load_default=dict)
    received = fields.String(required=True, metadata={"description": "The start of the message as received"})


TASKS = {s.__name__: s() for s in (CopyObjects, CopyPart, CompleteMultipart, DeleteObjects)}
EVENTS = {s.__name__: s() for s in (ObjectsCopied, PartCopied, ObjectsDeleted, TaskFailed,
                                    WorkerHeartbeat, JobAccepted, SubmissionRejected)}
SUBMISSIONS = {"SubmitJob": SubmitJob()}


def build(type_: str, **fields_) -> dict:
    """A message of ``type_``, validated as the receiver will validate it."""
    raw = {"schema_version": SCHEMA_VERSION, "type": type_, **fields_}
    return load(raw, {**TASKS, **EVENTS, **SUBMISSIONS})


def load(raw, schemas: dict) -> dict:
    """Validate ``raw`` against the schema its ``type`` names, or raise MalformedMessage."""
    if not isinstance(raw, dict):
        raise MalformedMessage("message is not a JSON object", {"_schema": ["expected an object"]})
    schema = schemas.get(raw.get("type"))
    if schema is None:
        expected = ", ".join(sorted(schemas))
        raise MalformedMessage(f"unknown message type {raw.get('type')!r}; expected one of {expected}",
                               {"type": [f"must be one of {expected}"]})
    try:
        return schema.load(raw)
    except ValidationError as exc:
        raise MalformedMessage(_describe(exc.messages), exc.messages) from None


def _describe(messages, path="") -> str:
    parts = []
    if isinstance(messages, dict):
        for name, value in messages.items():
            parts.append(_describe(value, f"{path}.{name}" if path else str(name)))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        parts.append(f"{path}: {' '.join(messages)}")
    else:
        parts.extend(_describe(m, path) for m in messages)
    return "; ".join(p for p in parts if p)
