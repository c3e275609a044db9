"""Wire messages between the head node and workers.

Every message is a JSON object with ``schema_version`` and ``type``; the
``type`` selects a schema (``message_schemas.py``, marshmallow), and unknown
fields are refused so a typo in an integrator's message is reported instead of
silently ignored.

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

Checking: a message that is already what its schema gives back (known keys,
values of the exact types, every validator passed) is checked here against the
plans generated from the schemas (``message_plans.py``), in a few µs a record;
any other message goes through marshmallow, which converts it or explains what
is wrong. Both give the same result (a property test holds them to it), and
the processes that only pass well-formed messages never load marshmallow.
"""
from __future__ import annotations

import math

from pipeline.errors import MalformedMessage
from pipeline.message_plans import PLANS

SCHEMA_VERSION = 1
TIERS = ("express", "plus", "ultra")
CODEC_MODES = ("none", "compress", "decompress")
MAX_BATCH_OBJECTS = 1000

TASKS = frozenset({"CopyObjects", "CopyPart", "CompleteMultipart", "DeleteObjects"})
EVENTS = frozenset({"ObjectsCopied", "PartCopied", "ObjectsDeleted", "TaskFailed", "WorkerHeartbeat",
                    "JobAccepted", "SubmissionRejected"})
SUBMISSIONS = frozenset({"SubmitJob"})
_ALL = TASKS | EVENTS | SUBMISSIONS
# name -> (its field names, its fields' plans)
_PLANS = {name: (frozenset(field[0] for field in plan), plan) for name, plan in PLANS.items()}
_UNSURE = object()   # a value only marshmallow can judge


def build(type_: str, **fields_) -> dict:
    """A message of ``type_``, validated as the receiver will validate it."""
    return load({"schema_version": SCHEMA_VERSION, "type": type_, **fields_}, _ALL)


def load(raw, types: frozenset) -> dict:
    """Validate ``raw`` against the schema its ``type`` names (one of ``types``), or raise
    MalformedMessage."""
    if not isinstance(raw, dict):
        raise MalformedMessage("message is not a JSON object", {"_schema": ["expected an object"]})
    type_ = raw.get("type")
    if type_ not in types:
        expected = ", ".join(sorted(types))
        raise MalformedMessage(f"unknown message type {type_!r}; expected one of {expected}",
                               {"type": [f"must be one of {expected}"]})
    loaded = plain(raw, type_)
    if loaded is not None:
        return loaded
    from pipeline import message_schemas   # loads marshmallow: only for what the plans cannot vouch for

    return message_schemas.load(raw)


def plain(item, name: str) -> dict | None:
    """``item`` as schema ``name`` loads it, or None if only marshmallow can tell."""
    names, plan = _PLANS[name]
    if type(item) is not dict or not item.keys() <= names:
        return None
    loaded = {}
    for field, kind, required, allow_none, default, checks in plan:
        if field not in item:
            if required:
                return None
            if default is not None:
                how, value = default
                loaded[field] = value if how == "value" else {"list": list, "dict": dict}[value]()
            continue
        value = item[field]
        if value is None:
            if not allow_none:
                return None
        else:
            value = _value(value, kind)
            if value is _UNSURE or not all(_passes(value, check) for check in checks):
                return None
        loaded[field] = value
    return loaded


def _value(value, kind):
    """``value`` as a field of ``kind`` loads it, when that is sure to be exactly ``value``."""
    if kind == "str":
        return value if type(value) is str else _UNSURE
    if kind == "int":
        return value if type(value) is int else _UNSURE
    if kind == "bool":
        return value if type(value) is bool else _UNSURE
    if kind == "float":
        return value if type(value) is float and math.isfinite(value) else _UNSURE
    if kind == "other":
        return _UNSURE
    if kind[0] == "nested":
        loaded = plain(value, kind[1])
        return _UNSURE if loaded is None else loaded
    if kind[0] == "list":
        if type(value) is not list:
            return _UNSURE
        items = [_value(item, kind[1]) for item in value]
        return _UNSURE if any(item is _UNSURE for item in items) else items
    if kind[0] == "dict":
        if type(value) is not dict:
            return _UNSURE
        items = {_value(k, kind[1]): _value(v, kind[2]) for k, v in value.items()}
        return _UNSURE if _UNSURE in items or _UNSURE in items.values() else items
    return _UNSURE


def _passes(value, check: tuple) -> bool:
    """Whether ``value`` passes a validator (``message_schemas._check`` gives them as data)."""
    what = check[0]
    if what == "equal":
        return value == check[1]
    if what == "oneof":
        return value in check[1]
    if what == "length":
        low, high, equal = check[1:]
        if equal is not None:
            return len(value) == equal
        return (low is None or len(value) >= low) and (high is None or len(value) <= high)
    if what == "range":
        low, high, low_inclusive, high_inclusive = check[1:]
        return ((low is None or (value >= low if low_inclusive else value > low))
                and (high is None or (value <= high if high_inclusive else value < high)))
    return False
