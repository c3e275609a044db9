"""Bad input gets a clear error and loses nothing (acceptance 7)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest

from pipeline import bus as busmod
from pipeline import errors
from pipeline.credentials import Credentials
from test_cp import run_cp
from conftest import bus_config
from support.waiting import wait_finished, wait_for


def listing(client, bucket):
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", ()))


@pytest.mark.parametrize("case, expected", [
    ("wrong credentials", "access denied"),
    ("missing bucket", "the bucket does not exist"),
    ("empty prefix", "holds no objects"),
    ("missing prefix", "holds no objects"),
    ("inside the source", "lies inside the source"),
    ("the source itself", "is the source itself"),
    ("one object moved onto itself", "is the source itself"),
    ("one object moved into its own prefix", "is the source itself"),
    ("one object moved onto itself through another name of its server", "is the source itself"),
    ("the source itself through another name of its server", "is the source itself"),
    ("not an endpoint URL", "'notaurl' is not an http(s) endpoint URL"),
    ("an endpoint URL with a path", "an S3 endpoint URL is a scheme, a host and a port, with no path"),
    ("an endpoint URL with a password", "'http://…@127.0.0.1:1': an S3 endpoint URL is a scheme"),
])
def test_refused_jobs_say_why_and_write_nothing(case, expected, buckets, s3_env, head_node):
    source, dest = buckets
    client = s3_env.client()
    client.put_object(Bucket=source, Key="data/a", Body=b"a")
    client.put_object(Bucket=source, Key="empty-dir/", Body=b"")
    # the same server by another name: localhost for 127.0.0.1, and the port written out
    same_server = {"bucket": source, "endpoint_url": s3_env.endpoint_url.replace("127.0.0.1", "localhost"),
                   "access_key_id": s3_env.access_key, "secret_access_key": s3_env.secret_key}
    node = head_node(FOLDERS={"same": same_server})
    args = {"source": f"s3://{source}/data/", "destination": f"s3://{dest}/out/",
            "endpoint_url": s3_env.endpoint_url}
    if case == "wrong credentials":
        args["credentials"] = Credentials(s3_env.access_key, "not-the-secret")
    elif case == "missing bucket":
        args["source"] = "s3://no-such-bucket-cloudmover/data/"
    elif case == "empty prefix":
        args["source"] = f"s3://{source}/empty-dir/nothing/"
    elif case == "missing prefix":
        args["source"] = f"s3://{source}/never-written/"
    elif case == "inside the source":
        args["destination"] = f"s3://{source}/data/copy/"
    elif case == "the source itself":
        args["destination"] = f"s3://{source}/data/"
    elif case == "one object moved onto itself":
        args.update(source=f"s3://{source}/data/a", destination=f"s3://{source}/data/a", move=True)
    elif case == "one object moved into its own prefix":
        args.update(source=f"s3://{source}/data/a", destination=f"s3://{source}/data/", move=True)
    elif case == "one object moved onto itself through another name of its server":
        args.update(source=f"s3://{source}/data/a", destination="folder:same/data/a", move=True)
    elif case == "the source itself through another name of its server":
        args.update(destination="folder:same/data/", move=True)
    elif case == "not an endpoint URL":
        args["endpoint_url"] = "notaurl"
    elif case == "an endpoint URL with a path":
        args["endpoint_url"] = s3_env.endpoint_url + "/under/a/path"
    elif case == "an endpoint URL with a password":
        args["endpoint_url"] = "http://someone:not-the-secret@127.0.0.1:1"
    with pytest.raises(errors.PermanentError) as refused:
        node.service.create(**args)
    assert expected in str(refused.value)
    assert "not-the-secret" not in str(refused.value)
    assert listing(client, dest) == []
    assert listing(client, source) == ["data/a", "empty-dir/"]


def test_cp_prints_the_reason_and_exits_non_zero(buckets, s3_env):
    source, dest = buckets
    result = run_cp(f"s3://{source}/nothing-here/", f"s3://{dest}/", "--recursive",
                    "--endpoint-url", s3_env.endpoint_url)
    assert result.returncode == 2
    assert "holds no objects" in result.stderr


@pytest.mark.parametrize("source, destination, expected", [
    ("keep.txt", "keep.txt", "is the source itself"),
    ("keep.txt", "./", "is the source itself"),
    ("keep.txt", "link-to-keep.txt", "is the source itself"),
    ("tree", "tree/copy", "lies inside the source"),
    ("tree", "link-to-tree/copy", "lies inside the source"),
    ("tree", "tree", "is the source itself"),
])
def test_a_local_move_onto_itself_or_inside_itself_is_refused(tmp_path, source, destination, expected):
    """Local paths are compared as the files they name: a move of a file onto itself (however
    spelt) would have deleted it once its "copy" was verified."""
    (tmp_path / "keep.txt").write_bytes(b"precious")
    (tmp_path / "link-to-keep.txt").symlink_to("keep.txt")
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "sub" / "a.bin").write_bytes(b"a")
    (tmp_path / "link-to-tree").symlink_to("tree")
    result = run_cp(source, destination, "--recursive", "--move", cwd=tmp_path)
    assert result.returncode == 2, result.stdout
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "keep.txt").read_bytes() == b"precious"
    assert sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "tree").rglob("*")) == \
        ["tree/sub", "tree/sub/a.bin"]


def test_a_file_whose_name_is_not_utf8_fails_alone_and_stays(tmp_path):
    """No S3 key (nor the database) holds a name that is not UTF-8: such a file is a failed
    object with the reason, and a move leaves it where it is; named as the source itself, the
    job is refused."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "good.bin").write_bytes(b"good")
    bad = os.path.join(os.fsencode(source), b"bad\xffname.bin")
    with open(bad, "wb") as handle:
        handle.write(b"kept")
    result = run_cp(str(source), str(tmp_path / "dst"), "--recursive", "--move", "--json")
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["copied"], summary["failed"], summary["deleted"]) == (1, 1, 1)
    assert summary["failures"] == [{"key": "bad\ufffdname.bin", "kind": "copy", "reason":
                                    "its name is not valid UTF-8, which no S3 key can be: rename it and copy it again"}]
    assert (tmp_path / "dst" / "good.bin").read_bytes() == b"good"
    assert Path(os.fsdecode(bad)).read_bytes() == b"kept"
    refused = run_cp(os.fsdecode(bad), str(tmp_path / "dst"))
    assert refused.returncode == 2
    assert "'" + str(source) + "/bad\ufffdname.bin' is not valid UTF-8, which no S3 key can be" in refused.stderr


def test_entries_that_are_no_files_fail_alone_with_the_reason_and_stay(tmp_path):
    """A named pipe (reading it would wait forever), a link to nothing and a link to a directory
    (followed, a link to a parent lists forever) are not copied, and not silently either: each is
    a failed object saying what it is, a move leaves it, and named as the source it is refused."""
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "good.bin").write_bytes(b"good")
    (source / "link.bin").symlink_to("good.bin")        # a link to a file is copied as the file
    os.mkfifo(source / "pipe")
    (source / "dangling").symlink_to("nowhere")
    (source / "sub" / "up").symlink_to("..")
    (source / "loop").symlink_to("loop")
    result = run_cp(str(source), str(tmp_path / "dst"), "--recursive", "--move", "--json")
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["copied"], summary["failed"], summary["deleted"]) == (2, 4, 2)
    assert [(f["key"], f["reason"]) for f in summary["failures"]] == [
        ("dangling", "a symbolic link to 'nowhere', which does not exist: not copied"),
        ("loop", "cannot be read (Too many levels of symbolic links): not copied"),
        ("pipe", "a named pipe, not a regular file: not copied"),
        ("sub/up", "a symbolic link to a directory: not followed (copy the directory it points to on its own)")]
    assert sorted(p.name for p in (tmp_path / "dst").iterdir()) == ["good.bin", "link.bin"]
    assert (tmp_path / "dst" / "link.bin").read_bytes() == b"good"
    assert (source / "pipe").is_fifo() and (source / "dangling").is_symlink() and (source / "sub" / "up").is_dir()
    for name, said in (("pipe", "a named pipe, not a regular file"), ("dangling", "a symbolic link to 'nowhere'")):
        refused = run_cp(str(source / name), str(tmp_path / "dst"))
        assert refused.returncode == 2
        assert f"cloudmover: {source / name}: {said}" in refused.stderr


def take_down(top: Path) -> None:
    """Remove a chain of ``d`` directories (files beside each) bottom up: shutil.rmtree, like
    os.makedirs, recurses once per level, and such a tree breaks it (pytest's clean-up too)."""
    levels = [top]
    while (levels[-1] / "d").is_dir():
        levels.append(levels[-1] / "d")
    for level in reversed(levels):
        for entry in level.iterdir():
            entry.unlink()
        level.rmdir()


def test_a_tree_deeper_than_the_recursion_limit_is_copied_whole(tmp_path):
    source, destination = tmp_path / "src", tmp_path / "dst"
    depth = sys.getrecursionlimit() + 100
    try:
        level = source
        level.mkdir()
        for _ in range(depth):      # one level at a time: os.makedirs itself recurses per level
            level = level / "d"
            level.mkdir()
        (level / "deepest.bin").write_bytes(b"down here")
        (source / "top.bin").write_bytes(b"up here")
        result = run_cp(str(source), str(destination), "--recursive", "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        assert json.loads(result.stdout)["copied"] == 2
        assert (destination / level.relative_to(source) / "deepest.bin").read_bytes() == b"down here"
    finally:
        for top in (source, destination):
            if top.is_dir():
                take_down(top)


@pytest.mark.parametrize("failure, reason", [
    (RuntimeError("disk on fire"), "planning failed: RuntimeError: disk on fire"),
    (PermissionError(13, "Permission denied"), "planning failed: list {dir}: Permission denied"),
], ids=["unforeseen", "unreadable directory"])
def test_a_job_whose_planning_fails_fails_alone(tmp_path, head_node, monkeypatch, failure, reason):
    """A directory that cannot be read fails its job with the reason (its files are not left
    out without a word); so does an error nothing foresaw, and the planner goes on to the next
    job instead of retrying that one forever."""
    from headnode.models import JobLog
    broken, fine = tmp_path / "broken", tmp_path / "fine"
    for root in (broken, fine):
        (root / "zz-dir").mkdir(parents=True)
        (root / "a.bin").write_bytes(b"a")
        (root / "zz-dir" / "b.bin").write_bytes(b"b")
    scandir = os.scandir

    def failing(path):
        if os.fspath(path) == str(broken / "zz-dir"):
            raise failure
        return scandir(path)
    monkeypatch.setattr(os, "scandir", failing)     # the operating system's failure, injected
    node = head_node(workers=1)
    first = node.service.create(source=str(broken), destination=str(tmp_path / "out1"))
    second = node.service.create(source=str(fine), destination=str(tmp_path / "out2"))
    failed = wait_finished(node.service, first.id)
    assert failed.state == "failed" and failed.error == reason.format(dir=broken / "zz-dir")
    assert JobLog.select().where((JobLog.job == first.id) & (JobLog.message == failed.error)).exists()
    assert wait_finished(node.service, second.id).state == "complete"
    assert sorted(p.name for p in (tmp_path / "out2").rglob("*.bin")) == ["a.bin", "b.bin"]


def delete_as_a_worker(source, destination, key: str) -> dict:
    """The event of a worker's executor running a DeleteObjects task for ``key`` (8 bytes) from
    the store ``source`` whose copy is in ``destination`` (StoreSpecs)."""
    return as_a_worker("DeleteObjects", source, destination, [{"key": key, "dest_key": key, "size": 8}])


def as_a_worker(task_type: str, source, destination, objects: list[dict]) -> dict:
    """The event of a worker's executor running a ``task_type`` task of ``objects`` from the store
    ``source`` to ``destination`` (StoreSpecs)."""
    from pipeline.credentials import Sealer
    from pipeline.store import StoreCache, ref_from_spec
    from worker.executor import Executor
    from worker.strategies import MemoryBudget
    sealer = Sealer("x" * 32)
    task = {"type": task_type, "job_id": 1, "task_id": "t1", "source": ref_from_spec(source, sealer),
            "destination": ref_from_spec(destination, sealer), "objects": objects}
    executor = Executor(StoreCache(sealer), object_threads=2, memory=MemoryBudget(1 << 20),
                        copying=MemoryBudget(1 << 20))
    try:
        return executor.execute(task)
    finally:
        executor.close()


def test_a_local_file_changed_after_planning_is_neither_copied_nor_deleted(tmp_path):
    """A file still being written when its job was planned (a frame being rendered): its copy
    fails at once as changed (retrying the planned copy cannot pass), and a move that copied it
    before it changed keeps it, since its copy holds the older bytes."""
    from pipeline.store import StoreSpec, open_store
    source, destination = StoreSpec("local", str(tmp_path / "src")), StoreSpec("local", str(tmp_path / "dst"))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "frame.exr").write_bytes(b"half a frame")
    (tmp_path / "src" / "still.exr").write_bytes(b"a whole frame")
    planned = {o.key: o for page in open_store(source).list("") for o in page}
    refs = [{"key": key, "dest_key": key, "size": o.size, "etag": o.etag} for key, o in sorted(planned.items())]
    copied = as_a_worker("CopyObjects", source, destination, refs)
    assert [o["key"] for o in copied["copied"]] == ["frame.exr", "still.exr"]

    with open(tmp_path / "src" / "frame.exr", "ab") as rendering:    # the frame's second half lands
        rendering.write(b" and the rest")
    again = as_a_worker("CopyObjects", source, destination, refs)
    assert [o["key"] for o in again["copied"]] == ["still.exr"]
    assert again["failed"] == [{"key": "frame.exr", "retryable": False, "reason":
                                f"read {tmp_path}/src/frame.exr: the file changed after the job was planned "
                                "(now 25 bytes): copy it again once it is complete"}]
    deleted = as_a_worker("DeleteObjects", source, destination, [{**ref, "size": ref["size"]} for ref in refs])
    assert deleted["deleted"] == ["still.exr"]
    assert deleted["failed"] == [{"key": "frame.exr", "retryable": False, "reason":
                                  f"source kept: delete {tmp_path}/src/frame.exr: the file changed after it "
                                  "was copied (now 25 bytes), so it stays"}]
    assert (tmp_path / "src" / "frame.exr").read_bytes() == b"half a frame and the rest"
    assert not (tmp_path / "src" / "still.exr").exists()


def test_a_worker_never_deletes_a_source_that_is_its_own_copy(tmp_path):
    """Should a DeleteObjects task ever name an object as its own copy (the head node refuses
    such jobs), the worker keeps it and says why."""
    from pipeline.locations import parse_location
    (tmp_path / "keep.txt").write_bytes(b"precious")
    through_link = tmp_path / "link"
    through_link.symlink_to(tmp_path)
    event = delete_as_a_worker(parse_location(str(tmp_path)).spec, parse_location(str(through_link)).spec,
                               "keep.txt")
    assert event["deleted"] == []
    assert event["failed"] == [{"key": "keep.txt", "reason": "the destination is the source itself; "
                                                            "the source was kept", "retryable": False}]
    assert (tmp_path / "keep.txt").read_bytes() == b"precious"


def test_failed_copy_in_a_move_keeps_its_source(tmp_path):
    source, dest = tmp_path / "src", tmp_path / "dst"
    (source / "blocked").mkdir(parents=True)
    (source / "blocked" / "x.bin").write_bytes(b"kept")
    (source / "fine.bin").write_bytes(b"moved")
    dest.mkdir()
    (dest / "blocked").write_bytes(b"a file where a directory is needed")

    result = run_cp(str(source), str(dest), "--recursive", "--move")

    assert result.returncode == 1
    assert "failed: blocked/x.bin: write " in result.stderr and "File exists" in result.stderr
    assert (source / "blocked" / "x.bin").read_bytes() == b"kept"
    assert not (source / "fine.bin").exists()
    assert (dest / "fine.bin").read_bytes() == b"moved"


def test_move_deletes_sources_only_after_verified_copies(buckets, s3_env):
    source, dest = buckets
    client = s3_env.client()
    for n in range(30):
        client.put_object(Bucket=source, Key=f"m/{n}", Body=str(n).encode() * 100)
    result = run_cp(f"s3://{source}/m/", f"s3://{dest}/m/", "--recursive", "--move", "--json",
                    "--endpoint-url", s3_env.endpoint_url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["deleted"] == 30
    assert listing(client, source) == []
    assert all(client.get_object(Bucket=dest, Key=f"m/{n}")["Body"].read() == str(n).encode() * 100
               for n in range(30))


@pytest.mark.parametrize("bus_kind", ["sqlite", "sqs"])
@pytest.mark.parametrize("raw, reason", [
    ("this is not json", "not valid JSON"),
    (json.dumps({"schema_version": 1, "type": "SubmitJob", "source": "s3://a/"}), "destination"),
    (json.dumps({"schema_version": 1, "type": "SubmitJob", "source": "s3://a/", "destination": "s3://b/",
                 "speed": "ludicrous", "request_id": "req-7"}), "speed: Unknown field"),
    (json.dumps({"schema_version": 1, "type": "SubmitJob", "source": "s3://no-such-bucket-cm/x/",
                 "destination": "/tmp/cm-never", "request_id": "req-8"}), "the bucket does not exist"),
])
def test_malformed_submissions_are_answered_not_dropped(bus_kind, raw, reason, tmp_path, request, s3_env,
                                                        head_node):
    moto = request.getfixturevalue("moto") if bus_kind == "sqs" else None
    node = head_node(**bus_config(bus_kind, tmp_path, moto), ENDPOINT_URL=s3_env.endpoint_url)
    if bus_kind == "sqs":   # an integrator sends a plain SQS message, not a kombu envelope
        sqs = boto3.client("sqs", endpoint_url=moto.endpoint_url, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        url = sqs.get_queue_url(QueueName=node.bus.name(busmod.SUBMISSIONS))["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody=raw)
    else:
        node.bus.publish_raw(busmod.SUBMISSIONS, raw)
    reply = wait_for(lambda: node.bus.receive(busmod.SUBMISSION_REPLIES, timeout=1), timeout=60,
                     what="the reply to the submission")
    answer = reply.json()
    reply.ack()
    assert answer["type"] == "SubmissionRejected"
    assert reason in answer["reason"]
    assert answer["received"] == raw[:2000]
    if "request_id" in raw:
        assert answer["request_id"] == json.loads(raw)["request_id"]
    wait_for(lambda: node.bus.size(busmod.SUBMISSIONS) == 0, timeout=30, what="the submission to be settled")


def test_a_valid_submission_is_accepted_and_runs(buckets, s3_env, head_node, tmp_path):
    source, dest = buckets
    s3_env.client().put_object(Bucket=source, Key="in/file", Body=b"payload")
    node = head_node(ENDPOINT_URL=s3_env.endpoint_url)
    node.bus.publish(busmod.SUBMISSIONS, {"schema_version": 1, "type": "SubmitJob", "request_id": "r1",
                                          "source": f"s3://{source}/in/", "destination": f"s3://{dest}/out/"})
    reply = wait_for(lambda: node.bus.receive(busmod.SUBMISSION_REPLIES, timeout=1), timeout=60,
                     what="the reply")
    answer = reply.json()
    reply.ack()
    assert answer["type"] == "JobAccepted" and answer["request_id"] == "r1"
    assert wait_finished(node.service, answer["job_id"]).state == "complete"
    assert s3_env.client().get_object(Bucket=dest, Key="out/file")["Body"].read() == b"payload"


@pytest.mark.parametrize("bus_kind", ["sqlite", "sqs"])
def test_a_malformed_event_is_kept_in_the_dead_letter_queue(bus_kind, tmp_path, request, head_node):
    moto = request.getfixturevalue("moto") if bus_kind == "sqs" else None
    node = head_node(**bus_config(bus_kind, tmp_path, moto))
    node.bus.publish_raw(busmod.EVENTS, "{not an event")
    kept = wait_for(lambda: node.bus.receive(node.bus.dead_letter(busmod.EVENTS), timeout=1), timeout=60,
                    what="the malformed event in the dead-letter queue")
    body = kept.json()
    kept.ack()
    assert body["raw"] == "{not an event" and "not valid JSON" in body["malformed"]


@pytest.mark.parametrize("a, b, same", [
    ("http://127.0.0.1:9000", "http://localhost:9000", True),
    ("http://127.0.0.1:80", "http://127.0.0.1", True),
    ("https://127.0.0.1", "https://127.0.0.1:443", True),
    ("http://127.0.0.1:9000", "http://127.0.0.1:9001", False),
    ("http://no-such-host.invalid:9000", "http://NO-SUCH-HOST.invalid:9000", True),
    ("http://no-such-host.invalid:9000", "http://other-host.invalid:9000", False),
    (None, "https://s3.eu-west-1.amazonaws.com", True),       # AWS: bucket names are global
    (None, "https://s3.amazonaws.com.cn", True),
    (None, "http://127.0.0.1:9000", False),
])
def test_two_endpoints_are_one_server_however_they_are_written(a, b, same):
    from pipeline.places import same_store
    from pipeline.store import StoreSpec
    assert same_store(StoreSpec("s3", "bucket", "us-east-1", a), StoreSpec("s3", "bucket", "eu-west-1", b)) is same
    assert not same_store(StoreSpec("s3", "bucket", None, a), StoreSpec("s3", "other", None, b))


def test_a_worker_keeps_an_s3_source_named_as_its_own_copy_through_another_server_name(buckets, s3_env):
    """The same guard on S3: the delete task's destination names the source's bucket and key on
    the same server written another way (localhost for 127.0.0.1)."""
    from pipeline.credentials import Credentials
    from pipeline.store import StoreSpec
    source, _ = buckets
    client = s3_env.client()
    client.put_object(Bucket=source, Key="keep.bin", Body=b"precious")
    creds = Credentials(s3_env.access_key, s3_env.secret_key)
    named = s3_env.endpoint_url.replace("127.0.0.1", "localhost")
    event = delete_as_a_worker(StoreSpec("s3", source, "us-east-1", s3_env.endpoint_url, creds),
                               StoreSpec("s3", source, "us-east-1", named, creds), "keep.bin")
    assert event["deleted"] == [] and event["failed"][0]["reason"].startswith("the destination is the source")
    assert client.get_object(Bucket=source, Key="keep.bin")["Body"].read() == b"precious"


def test_archived_objects_fail_alone_saying_to_restore_them(moto, tmp_path):
    """Objects in S3 Glacier cannot be read or copied until restored: each fails alone, saying so
    (moto's server answers as S3 does), between buckets and to disk; the others are copied."""
    client = moto.client("s3")
    source, dest = f"cold-{uuid.uuid4().hex[:8]}", f"warm-{uuid.uuid4().hex[:8]}"
    for bucket in (source, dest):
        client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=source, Key="frames/archived.dpx", Body=b"a" * 10, StorageClass="GLACIER")
    client.put_object(Bucket=source, Key="frames/standard.dpx", Body=b"s" * 10)
    env = {"AWS_ACCESS_KEY_ID": moto.access_key, "AWS_SECRET_ACCESS_KEY": moto.secret_key,
           "AWS_DEFAULT_REGION": "us-east-1"}
    for target, said in ((f"s3://{dest}/copy/", f"copy s3://{source}/frames/archived.dpx to s3://{dest}/copy/archived.dpx: "
                                                 "the object is archived (ObjectNotInActiveTierError)"),
                         (str(tmp_path / "disk"), f"read s3://{source}/frames/archived.dpx: the object is archived "
                                                  "(InvalidObjectState)")):
        result = run_cp(f"s3://{source}/frames/", target, "--recursive", "--json", "--endpoint-url", moto.endpoint_url,
                        env_extra=env)
        assert result.returncode == 1, result.stderr
        summary = json.loads(result.stdout)
        assert (summary["copied"], summary["failed"]) == (1, 1)
        assert [f["key"] for f in summary["failures"]] == ["frames/archived.dpx"]
        assert summary["failures"][0]["reason"] == said + ": restore it from its archive storage class " \
                                                          "(S3 RestoreObject), then retry the job's failed objects"
    assert (tmp_path / "disk" / "standard.dpx").read_bytes() == b"s" * 10


def test_many_objects_into_a_file_are_refused_before_anything_is_written(tmp_path):
    """A directory's objects aimed at an existing file: refused at once, saying so (each object
    failed with "File exists" before), and the file is left as it was."""
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "a.bin").write_bytes(b"a")
    (source / "sub" / "b.bin").write_bytes(b"b")
    target = tmp_path / "notes.txt"
    target.write_bytes(b"mine")
    for recursive in (["--recursive"], []):
        result = run_cp(str(source), str(target), *recursive)
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"cloudmover: the destination {target} is a file: the objects of {source}/ need a directory" \
            in result.stderr
    assert target.read_bytes() == b"mine"
    one = run_cp(str(source / "a.bin"), str(target))      # one object onto a file replaces it, as cp does
    assert one.returncode == 0, one.stderr
    assert target.read_bytes() == b"a"


def test_an_unreadable_local_file_fails_alone_at_once_saying_so(tmp_path):
    """A file the copying user may not read fails alone and at once (it was an unexpected error,
    retried five times); the others are copied. Run as root, the copy runs without the
    capabilities that let root read any file."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "ok.txt").write_bytes(b"ok")
    locked = source / "locked.txt"
    locked.write_bytes(b"secret")
    locked.chmod(0)
    command = [sys.executable, "-m", "headnode.cli", "cp", str(source), str(tmp_path / "dst"), "--recursive",
               "--json"]
    if os.geteuid() == 0:
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["copied"], summary["failed"], summary["retries"]) == (1, 1, 0)
    assert summary["failures"] == [{"key": "locked.txt", "kind": "copy", "reason": f"read {locked}: Permission "
                                    "denied: the user this process runs as may not read it"}]
    assert (tmp_path / "dst" / "ok.txt").read_bytes() == b"ok"
    assert sorted(p.name for p in (tmp_path / "dst").iterdir()) == ["ok.txt"]
