"""Message schemas: strict, versioned, and documented as JSON Schema."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import Schema, ValidationError, fields

from pipeline import errors, messages, schemadocs

DOCS = Path(__file__).resolve().parents[1] / "docs" / "schemas"
STORE = {"kind": "s3", "bucket": "b", "region": "us-east-1", "endpoint_url": None, "credentials": None}
keys = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=200)


def submission(**fields):
    return {"schema_version": 1, "type": "SubmitJob", "source": "s3://a/p/", "destination": "s3://b/q/", **fields}


@settings(max_examples=60, deadline=None)
@given(objects=st.lists(st.tuples(keys, st.integers(0, 5 << 40)), min_size=1, max_size=20))
def test_copy_task_round_trips_through_json(objects):
    task = messages.build("CopyObjects", job_id=1, task_id="1-1", source=STORE, destination=STORE,
                          objects=[{"key": k, "dest_key": "x/" + k, "size": n, "etag": None} for k, n in objects])
    assert messages.load(json.loads(json.dumps(task)), messages.TASKS) == task


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


def _as_marshmallow_loads(schema, records):
    """What the plain marshmallow list of nested records gives: the loaded list or the error."""
    plain = Schema.from_dict({"records": fields.List(fields.Nested(schema))})()
    try:
        return plain.load({"records": records})["records"]
    except ValidationError as exc:
        return exc.messages


odd_values = st.sampled_from([None, True, False, 0, -1, 7, 1.5, "7", "true", "", "encoded", [1], {"a": 1}])
RECORD_SCHEMAS = [messages.ObjectRef, messages.CopiedObject, messages.PartRef, messages.ObjectFailure]


@st.composite
def records_of(draw, schema):
    """Records right for ``schema`` (optional fields may be absent), some with one thing wrong:
    an odd value, a required field missing or an unknown key."""
    right = {fields.String: st.one_of(st.text(max_size=5), st.sampled_from(["encoded", "decoded"])),
             fields.Integer: st.integers(0, 1 << 40), fields.Boolean: st.booleans()}
    declared = schema().fields
    record = {name: draw(right[type(field)]) for name, field in declared.items()
              if field.required or draw(st.booleans())}
    flaw = draw(st.sampled_from(["none", "none", "odd", "odd", "absent", "surprise"]))
    name = draw(st.sampled_from(sorted(declared)))
    if flaw == "odd":
        record[name] = draw(odd_values)
    elif flaw == "absent":
        record.pop(name, None)
    elif flaw == "surprise":
        record["surprise"] = 1
    return record


@settings(max_examples=500, deadline=None)
@given(data=st.data(), schema=st.sampled_from(RECORD_SCHEMAS))
def test_records_load_exactly_as_marshmallow_does(data, schema):
    """The fast check of record lists gives marshmallow's result, or marshmallow's error."""
    records = data.draw(st.lists(records_of(schema), max_size=3))
    quick = Schema.from_dict({"records": messages.Records(schema)})()
    try:
        loaded = quick.load({"records": records})["records"]
    except ValidationError as exc:
        loaded = exc.messages
    assert loaded == _as_marshmallow_loads(schema, records)


def test_records_of_a_batch_keep_their_types():
    task = messages.build("CopyObjects", job_id=1, task_id="1-1", source=STORE, destination=STORE,
                          objects=[{"key": "a", "dest_key": "b", "size": 7}])
    assert task["objects"] == [{"key": "a", "dest_key": "b", "size": 7, "etag": None}]
    with pytest.raises(errors.MalformedMessage, match="objects.0.size: Not a valid integer"):
        messages.build("CopyObjects", job_id=1, task_id="1-1", source=STORE, destination=STORE,
                       objects=[{"key": "a", "dest_key": "b", "size": True}])
