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

from marshmallow import RAISE, Schema, ValidationError, fields, missing, validate

from pipeline.errors import MalformedMessage

SCHEMA_VERSION = 1
TIERS = ("express", "plus", "ultra")
CODEC_MODES = ("none", "compress", "decompress")
MAX_BATCH_OBJECTS = 1000


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class Records(fields.List):
    """A list of flat records, each loaded with ``schema`` (string, integer and boolean fields).

    marshmallow spends 25-35 µs on each record, and every object of a copy crosses
    four loads of its batch (task and event, built and received). A record that is
    already what the schema gives back (known keys, values of the exact types that
    pass the field's validators) is checked here in a few µs and kept as marshmallow
    would keep it; any other record sends the whole list through marshmallow, which
    converts it or explains what is wrong.
    """

    _TYPES = {fields.String: str, fields.Integer: int, fields.Boolean: bool}

    def __init__(self, schema: type[Schema], **kwargs):
        super().__init__(fields.Nested(schema), **kwargs)
        self._plan = _record_plan(schema(), self._TYPES)

    def _deserialize(self, value, attr, data, **kwargs):
        if self._plan is not None and type(value) is list:
            loaded = [_plain_record(item, *self._plan) for item in value]
            if None not in loaded:
                return loaded
        return super()._deserialize(value, attr, data, **kwargs)


def _record_plan(schema: Schema, types: dict):
    """(known keys, per field: name, type, required, allow_none, default, validators), or None
    when the schema has anything the plain check does not reproduce (hooks, other field kinds,
    renamed keys, field pre/post-load functions)."""
    if any(schema._hooks.values()):
        return None
    plan = []
    for name, field in schema.fields.items():
        kind = types.get(type(field))
        if kind is None or field.data_key or field.attribute or field.pre_load or field.post_load:
            return None
        plan.append((name, kind, field.required, field.allow_none, field.load_default, tuple(field.validators)))
    return frozenset(name for name, *_ in plan), tuple(plan)


def _plain_record(item, names: frozenset, plan: tuple) -> dict | None:
    """``item`` as marshmallow would load it, or None if only marshmallow can tell."""
    if type(item) is not dict or not item.keys() <= names:
        return None
    loaded = {}
    for name, kind, required, allow_none, default, validators in plan:
        if name not in item:
            if required:
                return None
            if default is not missing:
                loaded[name] = default() if callable(default) else default
            continue
        value = item[name]
        if value is None:
            if not allow_none:
                return None
        elif type(value) is not kind:
            return None
        else:
            try:
                for check in validators:
                    check(value)
            except ValidationError:
                return None
        loaded[name] = value
    return loaded


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
    objects = Records(ObjectRef, required=True, validate=validate.Length(min=1, max=MAX_BATCH_OBJECTS))
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
    parts = Records(PartRef, required=True, validate=validate.Length(min=1))


class DeleteObjects(_Task):
    """Delete move sources; the worker re-checks each copy before deleting."""
    objects = Records(ObjectRef, required=True, validate=validate.Length(min=1, max=MAX_BATCH_OBJECTS))


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
    copied = Records(CopiedObject, required=True)
    failed = Records(ObjectFailure, load_default=list,
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
    failed = Records(ObjectFailure, load_default=list)


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
