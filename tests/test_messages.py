"""Message schemas: strict, versioned, and documented as JSON Schema."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import fields, validate

from pipeline import errors, message_plans, message_schemas, messages, schemadocs

DOCS = Path(__file__).resolve().parents[1] / "docs" / "schemas"
STORE = {"kind": "s3", "bucket": "b", "region": "us-east-1", "endpoint_url": None, "credentials": None}
keys = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=200)
ALL = messages.TASKS | messages.EVENTS | messages.SUBMISSIONS


def submission(**fields):
    return {"schema_version": 1, "type": "SubmitJob", "source": "s3://a/p/", "destination": "s3://b/q/", **fields}


@settings(max_examples=60, deadline=None)
@given(objects=st.lists(st.tuples(keys, st.integers(0, 5 << 40)), min_size=1, max_size=20))
def test_copy_task_round_trips_through_json(objects):
    task = messages.build("CopyObjects", job_id=1, task_id="1-1", source=STORE, destination=STORE,
                          objects=[{"key": k, "dest_key": "x/" + k, "size": n, "etag": None} for k, n in objects])
    assert messages.load(json.loads(json.dumps(task)), messages.TASKS) == task


@pytest.mark.parametrize("char", ["k", "é", "画", "😀"])
def test_batches_of_long_keys_stay_inside_a_queue_message(char):
    """S3 keys run to 1,024 bytes, and JSON writes a non-ASCII character as up to 12. A batch of
    such keys is cut short, so its task and the event that reports it stay well inside SNS's
    256 KiB (SQS takes 1 MiB); every object is planned once, in order."""
    from pipeline.planner import PlanSettings, plan_page
    from pipeline.store import ObjectInfo
    stem = char * ((1000 - 20) // len(char.encode()))
    page = [ObjectInfo(f"in/{stem}{n:06d}", 10, "d41d8cd98f00b204e9800998ecf8427e") for n in range(300)]
    batches = plan_page(page, source_prefix="in/", dest_prefix="out/longer/", settings=PlanSettings()).copy_batches
    assert [o["key"] for batch in batches for o in batch] == [o.key for o in page]
    for batch in batches:
        task = messages.build("CopyObjects", job_id=1, task_id="1-1", source=STORE, destination=STORE, objects=batch)
        event = messages.build("ObjectsCopied", job_id=1, task_id="1-1", failed=[], copied=[
            {"key": o["key"], "dest_key": o["dest_key"], "size": 10, "skipped": False,
             "checksum": "md5:d41d8cd98f00b204e9800998ecf8427e"} for o in batch])
        assert max(len(json.dumps(task)), len(json.dumps(event))) < 200_000
    assert all(len(batch) >= 20 for batch in batches[:-1]), "cut no shorter than the limit needs"


@pytest.mark.parametrize("raw, complaint", [
    (submission(colour="red"), "colour: Unknown field"),
    (submission(schema_version=2), "schema_version"),
    ({**submission(), "source": None}, "source"),
    (submission(tier="platinum"), "tier"),
    (submission(codec="squash"), "codec: Must be one of: none, compress, decompress."),
    ({"type": "Nonsense", "schema_version": 1}, "unknown message type 'Nonsense'"),
    (["not", "an", "object"], "not a JSON object"),
])
def test_malformed_messages_are_refused_with_the_reason(raw, complaint):
    with pytest.raises(errors.MalformedMessage) as caught:
        messages.load(raw, messages.SUBMISSIONS)
    assert complaint in str(caught.value)


def test_committed_json_schemas_match_the_code():
    generated = schemadocs.documents()
    committed = {path.name: json.loads(path.read_text()) for path in DOCS.glob("*.json")}
    assert committed == json.loads(json.dumps(generated)), "run: python -m pipeline.schemadocs docs/schemas"


@pytest.mark.parametrize("message", [
    submission(request_id="r-1", tier="ultra", move=True),
    submission(codec="compress"),
    messages.build("SubmissionRejected", reason="bad", received="{}"),
    messages.build("TaskFailed", job_id=3, task_id="3-4", task_type="CopyPart", reason="x", retryable=True,
                   attempt=2, keys=["k"]),
])
def test_json_schema_accepts_what_the_code_accepts(message):
    schema = json.loads((DOCS / f"{message['type']}.json").read_text())
    jsonschema.validate(message, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**message, "surprise": 1}, schema)


def test_only_codec_copy_tasks_carry_the_codec_field():
    """Plain copy tasks read exactly as before the codec option; a codec task says its mode."""
    fields = dict(job_id=1, task_id="1-1", source=STORE, destination=STORE,
                  objects=[{"key": "a", "dest_key": "b", "size": 1, "etag": None}])
    assert "codec" not in messages.build("CopyObjects", **fields)
    assert messages.build("CopyObjects", codec="decompress", **fields)["codec"] == "decompress"


def test_committed_plans_match_the_schemas():
    assert message_plans.PLANS == message_schemas.plans(), "run: python -m pipeline.message_schemas"


ODD = [None, True, False, 0, -1, 7, 1.5, float("nan"), float("inf"), "7", "true", "", "encoded", "compress",
       b"x", [1], ["a"], {"a": 1}, {"a": "b"}]


def _right(draw, field):
    """A value ``field`` loads as itself (passing its validators)."""
    checks = {type(v): v for v in field.validators}
    if validate.OneOf in checks:
        return draw(st.sampled_from(list(checks[validate.OneOf].choices)))
    if validate.Equal in checks:
        return checks[validate.Equal].comparable
    length = checks.get(validate.Length)
    low, high = (length.min or 0, min(length.max or 3, 3)) if length else (0, 3)
    if isinstance(field, fields.String):
        return draw(st.text(min_size=low, max_size=max(low, 5)))
    if isinstance(field, fields.Integer):
        bounds = checks.get(validate.Range)
        return draw(st.integers(bounds.min if bounds and bounds.min is not None else -5,
                                bounds.max if bounds and bounds.max is not None else 1 << 40))
    if isinstance(field, fields.Boolean):
        return draw(st.booleans())
    if isinstance(field, fields.Float):
        return draw(st.floats(allow_nan=False, allow_infinity=False))
    if isinstance(field, fields.Nested):
        return _record(draw, field.schema)
    if isinstance(field, fields.List):
        return [_right(draw, field.inner) for _ in range(draw(st.integers(low, high)))]
    if isinstance(field, fields.Dict):
        return draw(st.dictionaries(st.text(max_size=3), st.integers(0, 9), max_size=2))
    raise AssertionError(f"no strategy for {field!r}")


def _record(draw, schema) -> dict:
    return {name: _right(draw, field) for name, field in schema.fields.items()
            if field.required or draw(st.booleans())}


def _spoil(draw, record: dict, schema) -> None:
    """One thing wrong somewhere in ``record``: an odd value, a required field gone or an unknown
    key, at the top or inside a nested record."""
    name = draw(st.sampled_from(sorted(set(schema.fields) - {"type"})))   # the type picks the schema
    field, value = schema.fields[name], record.get(name)
    if isinstance(field, fields.Nested) and isinstance(value, dict) and draw(st.booleans()):
        return _spoil(draw, value, field.schema)
    if isinstance(field, fields.List) and isinstance(field.inner, fields.Nested) and value and draw(st.booleans()):
        return _spoil(draw, draw(st.sampled_from(value)), field.inner.schema)
    flaw = draw(st.sampled_from(["odd", "odd", "outside", "outside", "absent", "surprise"]))
    if flaw == "outside" and field.validators:
        record[name] = draw(st.sampled_from(_edges(field)))
    elif flaw in ("odd", "outside"):
        record[name] = draw(st.sampled_from(ODD))
    elif flaw == "absent":
        record.pop(name, None)
    else:
        record["surprise"] = 1


def _edges(field) -> list:
    """Values of the right type just outside each of ``field``'s validators."""
    edges = []
    for check in field.validators:
        if isinstance(check, validate.OneOf):
            edges.append("not-" + str(check.choices[0]))
        elif isinstance(check, validate.Equal):
            edges.append(check.comparable + 1)
        elif isinstance(check, validate.Range):
            edges += [check.min - (1 if check.min_inclusive else 0)] if check.min is not None else []
            edges += [check.max + (1 if check.max_inclusive else 0)] if check.max is not None else []
        else:
            assert isinstance(check, validate.Length), check
            sizes = ([check.min - 1] if check.min else []) + ([check.max + 1] if check.max is not None else [])
            edges += [[_minimal(field.inner)] * n if isinstance(field, fields.List) else "x" * n for n in sizes]
    return edges


def _minimal(field):
    """The simplest value ``field`` loads as itself."""
    checks = {type(v): v for v in field.validators}
    if validate.OneOf in checks:
        return checks[validate.OneOf].choices[0]
    if validate.Equal in checks:
        return checks[validate.Equal].comparable
    low = checks[validate.Length].min if validate.Length in checks else None
    if isinstance(field, fields.String):
        return "x" * (low or 1)
    if isinstance(field, fields.Integer):
        bounds = checks.get(validate.Range)
        return bounds.min if bounds and bounds.min is not None else 1
    if isinstance(field, fields.Boolean):
        return True
    if isinstance(field, fields.Float):
        return 1.5
    if isinstance(field, fields.Nested):
        return {name: _minimal(f) for name, f in field.schema.fields.items() if f.required}
    if isinstance(field, fields.List):
        return [_minimal(field.inner)] * (low or 1)
    return {"a": 1}


def _outcome(load, raw):
    try:
        return load(raw)
    except errors.MalformedMessage as exc:
        return "refused", exc.errors


@settings(max_examples=600, deadline=None)
@given(data=st.data(), name=st.sampled_from(sorted(message_schemas.SCHEMAS)))
def test_the_plain_check_loads_exactly_as_marshmallow_does(data, name):
    """Every message type, right or with one thing wrong: the same message back, or the same
    complaint; and a right one never needs marshmallow."""
    schema = message_schemas.SCHEMAS[name]
    raw = {**_record(data.draw, schema), "type": name}
    spoiled = data.draw(st.booleans())
    if spoiled:
        _spoil(data.draw, raw, schema)
    expected = _outcome(message_schemas.load, raw)
    assert _outcome(lambda r: messages.load(r, ALL), raw) == expected
    if not spoiled and name != "SubmissionRejected":   # its free-form errors are always marshmallow's
        assert messages.plain(raw, name) == expected


def _fields_to_spoil(message: dict, schema):
    """(record holding the field, field name, field) for every field of ``schema``'s messages, and
    of the records nested in them (the first of a list)."""
    for name, field in schema.fields.items():
        if name == "type":
            continue
        yield message, name, field
        inner = field.inner if isinstance(field, fields.List) else field
        if isinstance(inner, fields.Nested):
            record = message[name][0] if isinstance(field, fields.List) else message[name]
            yield from _fields_to_spoil(record, inner.schema)


@pytest.mark.parametrize("name", sorted(message_schemas.SCHEMAS))
def test_every_field_at_its_edges_loads_as_marshmallow_does(name):
    """Each field of each message (nested records too) set to every odd value and to just outside
    each of its validators: the plain check never accepts what marshmallow refuses or converts."""
    schema = message_schemas.SCHEMAS[name]
    base = {**_minimal(fields.Nested(type(schema))), "type": name}
    for field_name, field in [(n, f) for n, f in schema.fields.items() if not f.required]:
        base[field_name] = _minimal(field)
    assert _outcome(lambda r: messages.load(r, ALL), base) == _outcome(message_schemas.load, base)
    checked = 0
    for path_index, (_, field_name, field) in enumerate(_fields_to_spoil(copy.deepcopy(base), schema)):
        for value in ODD + _edges(field):
            message = copy.deepcopy(base)
            record, _, _ = list(_fields_to_spoil(message, schema))[path_index]
            record[field_name] = value
            expected = _outcome(message_schemas.load, message)
            assert _outcome(lambda r: messages.load(r, ALL), message) == expected, (field_name, value)
            checked += 1
    assert checked > len(ODD)


def test_passing_well_formed_messages_does_not_load_marshmallow():
    """The point of the plain check: a cp, a head node and a worker start ~40 ms sooner."""
    script = f"""
import sys
import headnode.node, worker.main
from pipeline import messages
store = {STORE!r}
task = messages.build("CopyObjects", job_id=1, task_id="1-1", source=store, destination=store,
                      objects=[{{"key": "a", "dest_key": "b", "size": 7, "etag": None}}])
messages.load(task, messages.TASKS)
messages.build("ObjectsCopied", job_id=1, task_id="1-1", retries=1, retry_codes={{"SlowDown": 1}},
               copied=[{{"key": "a", "dest_key": "b", "size": 7, "checksum": "md5:0"}}])
messages.build("WorkerHeartbeat", worker_id="w", region="r", state="busy", tasks_done=1, bytes_done=7,
               sent_at=1.5)
messages.load({submission()!r}, messages.SUBMISSIONS)
assert "marshmallow" not in sys.modules, sorted(m for m in sys.modules if m.startswith("marshmallow"))
"""
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).resolve().parents[1])


def test_records_of_a_batch_keep_their_types():
    task = messages.build("CopyObjects", job_id=1, task_id="1-1", source=STORE, destination=STORE,
                          objects=[{"key": "a", "dest_key": "b", "size": 7}])
    assert task["objects"] == [{"key": "a", "dest_key": "b", "size": 7, "etag": None}]
    with pytest.raises(errors.MalformedMessage, match="objects.0.size: Not a valid integer"):
        messages.build("CopyObjects", job_id=1, task_id="1-1", source=STORE, destination=STORE,
                       objects=[{"key": "a", "dest_key": "b", "size": True}])
