"""The schemas of the wire messages (marshmallow): what each message holds, and its full check.

``pipeline/messages.py`` is what the rest of the code calls. It checks a
well-formed message with a plan generated from these schemas
(``message_plans.py``: field kinds, defaults and validators as plain data), and
comes here only for a message that plan cannot vouch for: one with an error to
explain, or a value marshmallow would convert (``"7"`` for an integer). So
marshmallow, about 40 ms of every process's start, loads only when such a
message arrives. ``python -m pipeline.message_schemas`` writes the plans; a test
fails when the committed file differs from what these schemas give, and
another that the plain check and marshmallow ever disagree.
"""
from __future__ import annotations

import sys
from pathlib import Path

from marshmallow import RAISE, Schema, ValidationError, fields, missing, validate

from pipeline.errors import MalformedMessage
from pipeline.messages import CODEC_MODES, MAX_BATCH_OBJECTS, SCHEMA_VERSION, TIERS

PLANS_FILE = Path(__file__).with_name("message_plans.py")


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
    objects = fields.List(fields.Nested(ObjectRef), required=True, validate=validate.Length(min=1, max=MAX_BATCH_OBJECTS))
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
    sync = fields.Boolean(load_default=False)     # the copy should keep the source's ETag (a sync without codec)


class DeleteObjects(_Task):
    """Delete move sources; the worker re-checks each copy before deleting."""
    objects = fields.List(fields.Nested(ObjectRef), required=True, validate=validate.Length(min=1, max=MAX_BATCH_OBJECTS))


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
    retryable = fields.Boolean(load_default=False, metadata={
        "description": "It may pass another time (throttled past its retries, a copy not verified): "
                       "the head node sends the object again in a task of its own"})


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
                         metadata={"description": "Objects not copied: for good, or (retryable) this time"})


class PartCopied(_Event):
    key = fields.String(required=True)
    upload_id = fields.String(required=True)
    part_number = fields.Integer(required=True)
    etag = fields.String(required=True)
    size = fields.Integer(required=True)
    checksum = fields.String(load_default=None, allow_none=True)


class ObjectsDeleted(_Event):
    deleted = fields.List(fields.String(), required=True)
    failed = fields.List(fields.Nested(ObjectFailure), load_default=list,
                         metadata={"description": "Sources kept: for good, or (retryable) this time"})


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
SCHEMAS = {**TASKS, **EVENTS, **SUBMISSIONS}


def load(raw: dict) -> dict:
    """``raw`` (a dict whose ``type`` names a message) loaded by its schema, or MalformedMessage."""
    try:
        return SCHEMAS[raw["type"]].load(raw)
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


# -- plans: the schemas as plain data, for messages.py -----------------------------------------
_KINDS = {fields.String: "str", fields.Integer: "int", fields.Boolean: "bool", fields.Float: "float"}


def plans() -> dict[str, tuple]:
    """Message or record name -> its fields' plans: (name, kind, required, allow_none, default,
    checks), in declaration order. A field the plain check cannot reproduce has kind "other":
    a message that carries it goes to marshmallow."""
    out: dict[str, tuple] = {}

    def plan_of(schema: Schema) -> str:
        name = type(schema).__name__
        if any(schema._hooks.values()):
            raise ValueError(f"{name}: schema hooks (pre_load, validates_schema…) are not in the plain check")
        if name not in out:
            out[name] = tuple(_field_plan(field_name, field, plan_of)
                              for field_name, field in schema.fields.items())
        return name

    for schema in SCHEMAS.values():
        plan_of(schema)
    return dict(sorted(out.items()))


def _field_plan(name: str, field, plan_of) -> tuple:
    if field.data_key or field.attribute or getattr(field, "pre_load", None) or getattr(field, "post_load", None):
        kind, checks = "other", ()
    else:
        kind = _kind(field, plan_of)
        checks = tuple(_check(v) for v in field.validators)
        if None in checks:
            kind, checks = "other", ()
    if field.load_default is missing:
        default = None
    elif callable(field.load_default):
        default = ("new", field.load_default.__name__)   # list or dict
    else:
        default = ("value", field.load_default)
    return name, kind, field.required, field.allow_none, default, checks


def _kind(field, plan_of):
    if type(field) in _KINDS:
        return _KINDS[type(field)]
    if type(field) is fields.Nested:
        if field.many or field.only or field.exclude or field.unknown:   # the nested schema as it stands
            return "other"
        return ("nested", plan_of(field.schema))
    if type(field) is fields.List:
        inner = _kind(field.inner, plan_of)
        return "other" if inner == "other" or field.inner.validators else ("list", inner)
    if type(field) is fields.Dict and field.key_field and field.value_field:
        key, value = _kind(field.key_field, plan_of), _kind(field.value_field, plan_of)
        plain = key == "str" and value in ("str", "int", "bool") and not (
            field.key_field.validators or field.value_field.validators)
        return ("dict", key, value) if plain else "other"
    return "other"


def _check(validator):
    """A validator as data (see messages._passes), or None for one the plain check lacks."""
    if type(validator) is validate.Equal:
        return ("equal", validator.comparable)
    if type(validator) is validate.OneOf:
        return ("oneof", tuple(validator.choices))
    if type(validator) is validate.Length:
        return ("length", validator.min, validator.max, validator.equal)
    if type(validator) is validate.Range:
        return ("range", validator.min, validator.max, validator.min_inclusive, validator.max_inclusive)
    return None


def plans_source() -> str:
    lines = ['"""The wire messages\' plans for messages.py\'s plain check. Generated from the schemas by',
             "``python -m pipeline.message_schemas``: do not edit.", '"""', "PLANS = {"]
    for name, plan in plans().items():
        lines.append(f"    {name!r}: (")
        lines.extend(f"        {field!r}," for field in plan)
        lines.append("    ),")
    lines.append("}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    PLANS_FILE.write_text(plans_source())
    print(f"wrote {PLANS_FILE}", file=sys.stderr)
