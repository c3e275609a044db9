"""``cloudmover cp`` between two buckets of a real S3 server (acceptance 1)."""
from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

STRANGE_KEYS = ["with space/a file.txt", "ünïcødé/ファイル.bin", "plus+sign", "per%cent", "eq=uals",
                "deep/" + "/".join(f"d{i}" for i in range(12)) + "/leaf", "empty-object"]
MiB = 1 << 20


def run_cp(*args, env_extra=None, timeout=600, cwd=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "headnode.cli", "cp", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)


def put_corpus(client, bucket: str, objects: dict) -> None:
    def put(item):
        key, body = item
        client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/x-cm-test",
                          Metadata={"origin": "cloudmover-test", "key-len": str(len(key))})
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, objects.items()))


def corpus(rng: random.Random) -> dict:
    objects = {f"small/{i:04d}": rng.randbytes(rng.randint(1, 4096)) for i in range(2000)}
    for n, size in enumerate((6 * MiB + 1, 11 * MiB, 16 * MiB - 3)):
        objects[f"large/object-{n}"] = rng.randbytes(size)
    for key in STRANGE_KEYS:
        objects[key] = b"" if key == "empty-object" else key.encode() * 3
    return objects


def test_cp_copies_every_object_with_bytes_metadata_and_content_type(buckets, s3_env):
    source, dest = buckets
    client = s3_env.client()
    objects = corpus(random.Random(1))
    put_corpus(client, source, objects)

    result = run_cp(f"s3://{source}/", f"s3://{dest}/copy/", "--recursive", "--json",
                    "--endpoint-url", s3_env.endpoint_url,
                    env_extra={"CLOUDMOVER_MULTIPART_THRESHOLD": str(5 * MiB),
                               "CLOUDMOVER_PART_SIZE": str(5 * MiB)})
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["state"] == "complete"
    assert summary["copied"] == len(objects) and summary["failed"] == 0
    assert summary["bytes"] == sum(len(b) for b in objects.values())

    def check(item):
        key, body = item
        got = client.get_object(Bucket=dest, Key="copy/" + key)
        data = got["Body"].read()
        return (key, hashlib.sha256(data).digest() == hashlib.sha256(body).digest(),
                got["ContentType"], got["Metadata"])
    with ThreadPoolExecutor(16) as pool:
        for key, same, content_type, metadata in pool.map(check, objects.items()):
            assert same, key
            assert content_type == "application/x-cm-test", key
            assert metadata == {"origin": "cloudmover-test", "key-len": str(len(key))}, key
    listed = client.get_paginator("list_objects_v2").paginate(Bucket=dest)
    assert sum(len(page.get("Contents", ())) for page in listed) == len(objects)


@pytest.mark.parametrize("flag", ["--recursive", None])
def test_cp_top_level_only_without_recursive(buckets, s3_env, flag):
    source, dest = buckets
    client = s3_env.client()
    put_corpus(client, source, {"top/a": b"1", "top/b": b"22", "top/sub/c": b"333"})
    args = [f"s3://{source}/top/", f"s3://{dest}/", "--json", "--endpoint-url", s3_env.endpoint_url]
    result = run_cp(*args, *([flag] if flag else []))
    assert result.returncode == 0, result.stderr
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=dest).get("Contents", ()))
    assert keys == (["a", "b", "sub/c"] if flag else ["a", "b"])


def test_cp_tags_follow_the_object_across_stores(buckets, s3_env, tmp_path):
    source, _ = buckets
    client = s3_env.client()
    client.put_object(Bucket=source, Key="tagged", Body=b"x" * 100, Tagging="team=astro&kind=raw")
    local = tmp_path / "local"
    assert run_cp(f"s3://{source}/", str(local), "--recursive", "--endpoint-url", s3_env.endpoint_url).returncode == 0
    assert (local / "tagged").read_bytes() == b"x" * 100
    back = run_cp(str(local), f"s3://{source}/back/", "--recursive", "--endpoint-url", s3_env.endpoint_url)
    assert back.returncode == 0, back.stderr
    assert client.get_object(Bucket=source, Key="back/tagged")["Body"].read() == b"x" * 100
    same_store = run_cp(f"s3://{source}/tagged", f"s3://{source}/moved/tagged", "--endpoint-url",
                        s3_env.endpoint_url)
    assert same_store.returncode == 0, same_store.stderr
    tags = client.get_object_tagging(Bucket=source, Key="moved/tagged")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("kind", "raw"), ("team", "astro")]


def test_folder_markers_land_as_directories_and_a_clash_fails_alone(buckets, s3_env, tmp_path):
    """An S3 console's folder (an empty key ending in /) becomes a directory on disk, not a file
    that would block the objects under it. A key that cannot land beside another (a file where
    a directory is) fails with the reason, and leaves no half-written file."""
    source, _ = buckets
    client = s3_env.client()
    bodies = {"scans/": b"", "scans/day1/": b"", "scans/day1/a.dpx": b"a" * 10, "empty/": b"",
              "clash/b": b"b", "clash": b"a file where a directory is"}
    for key, body in bodies.items():
        client.put_object(Bucket=source, Key=key, Body=body)
    local = tmp_path / "local"
    (local / "clash").mkdir(parents=True)   # the directory the file "clash" cannot replace
    result = run_cp(f"s3://{source}/", str(local), "--recursive", "--endpoint-url", s3_env.endpoint_url, "--json")
    assert result.returncode == 1
    summary = json.loads(result.stdout)
    assert (summary["copied"], summary["failed"]) == (len(bodies) - 1, 1)
    assert [(f["key"], f["reason"]) for f in summary["failures"]] == \
        [("clash", f"write {local}/clash: Is a directory")]
    assert (local / "scans" / "day1" / "a.dpx").read_bytes() == b"a" * 10
    assert (local / "empty").is_dir() and not any((local / "empty").iterdir())
    assert (local / "clash" / "b").read_bytes() == b"b"
    assert sorted(p.name for p in local.iterdir()) == ["clash", "empty", "scans"]


def test_folder_markers_copy_and_move_between_buckets(buckets, s3_env):
    """An S3 console's folders (empty keys ending in /) copy and move like any object. SeaweedFS
    keeps them as directories, which its CopyObject says do not exist: the copy then writes them
    anew from what GET reads, and they are not reported missing."""
    source, dest = buckets
    client = s3_env.client()
    bodies = {"scans/": b"", "scans/day1/": b"", "scans/day1/a.dpx": b"a" * 10, "empty/": b"", "zero": b""}
    for key, body in bodies.items():
        client.put_object(Bucket=source, Key=key, Body=body,
                          ContentType="application/x-directory" if key.endswith("/") else "image/x-dpx")

    def listed(bucket, prefix):
        return {o["Key"]: o["Size"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", ())}

    copied = run_cp(f"s3://{source}/", f"s3://{dest}/copy/", "--recursive", "--json",
                    "--endpoint-url", s3_env.endpoint_url)
    assert copied.returncode == 0, copied.stdout + copied.stderr
    summary = json.loads(copied.stdout)
    assert (summary["copied"], summary["failed"]) == (len(bodies), 0)
    assert listed(dest, "copy/") == {"copy/" + key: len(body) for key, body in bodies.items()}
    assert client.head_object(Bucket=dest, Key="copy/empty/")["ContentType"] == "application/x-directory"

    moved = run_cp(f"s3://{dest}/copy/", f"s3://{dest}/moved/", "--recursive", "--move", "--json",
                   "--endpoint-url", s3_env.endpoint_url)
    assert moved.returncode == 0, moved.stdout + moved.stderr
    summary = json.loads(moved.stdout)
    assert (summary["copied"], summary["deleted"], summary["failed"]) == (len(bodies), len(bodies), 0)
    assert listed(dest, "moved/") == {"moved/" + key: len(body) for key, body in bodies.items()}
    assert listed(dest, "copy/") == {}
    assert client.get_object(Bucket=dest, Key="moved/scans/day1/a.dpx")["Body"].read() == b"a" * 10


def test_cp_resolves_named_folders_with_their_own_keys(buckets, s3_env, monkeypatch, tmp_path):
    source, dest = buckets
    client = s3_env.client()
    client.put_object(Bucket=source, Key="projects/a/frame.dpx", Body=b"dpx" * 1000)
    folders = {"studio": {"bucket": source, "prefix": "projects", "endpoint_url": s3_env.endpoint_url,
                          "access_key_id": s3_env.access_key, "secret_access_key": s3_env.secret_key}}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):   # only the folder's keys may work
        monkeypatch.delenv(name)
    result = run_cp("folder:studio/a/", str(tmp_path / "out"), "--recursive",
                    env_extra={"CLOUDMOVER_FOLDERS": json.dumps(folders)})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "frame.dpx").read_bytes() == b"dpx" * 1000
    assert s3_env.secret_key not in result.stdout + result.stderr

    unknown = run_cp("folder:archive/a/", str(tmp_path / "out"), env_extra={"CLOUDMOVER_FOLDERS": json.dumps(folders)})
    assert unknown.returncode == 2 and "no folder named 'archive' (folders: studio)" in unknown.stderr
