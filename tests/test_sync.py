"""`cp --sync` skips what is already at the destination, and only that (issue 2: "a sync mode
that skips objects already present with the same size and checksum").

An object uploaded in parts has an ETag that is no MD5 of its bytes but the MD5 of its parts'
MD5s (``…-N``). A sync that took only MD5s for checksums copied every such object again on every
run: the large ones that matter most. Now a sync copies such an object in its own parts, so the
copy has the source's ETag (on AWS's rules, which moto follows), and compares a local file with
one by hashing the file in the object's parts. A changed object is still copied.
"""
from __future__ import annotations

import hashlib
import io
import json
import random
import uuid

import pytest
from boto3.s3.transfer import TransferConfig

from pipeline import errors
from pipeline.credentials import Credentials
from pipeline.store import StoreSpec, open_store
from test_cp import run_cp
from worker import strategies

MiB = 1 << 20
IN_FIVES = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
# parts of 8 MiB above 10 MiB: not the sources' 5 MiB parts, so a copy keeps theirs only on purpose
PLAN = {"CLOUDMOVER_MULTIPART_THRESHOLD": str(10 * MiB), "CLOUDMOVER_PART_SIZE": str(8 * MiB)}


def bodies(seed: int) -> dict:
    rng = random.Random(seed)
    return {"shots/still.dpx": rng.randbytes(3000),           # put whole: an MD5 ETag
            "shots/one-part.exr": rng.randbytes(100_000),     # one part: "…-1"
            "shots/mid.dpx": rng.randbytes(7 * MiB + 11),     # two parts, copied by a worker's batch
            "shots/deep/big.exr": rng.randbytes(11 * MiB),    # three parts, above the threshold: in part tasks
            "shots/flat.raw": rng.randbytes(10 * MiB + 1)}    # put whole, above the threshold


def upload(client, bucket: str, objects: dict) -> None:
    for key, body in objects.items():
        if key.endswith(("still.dpx", "flat.raw")):
            client.put_object(Bucket=bucket, Key=key, Body=body)
        elif key.endswith("one-part.exr"):
            upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
            etag = client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=body)["ETag"]
            client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                             MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
        else:
            client.upload_fileobj(io.BytesIO(body), bucket, key, Config=IN_FIVES)


def etags(client, bucket: str, prefix: str) -> dict:
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"][len(prefix):]: o["ETag"].strip('"') for o in listed}


def sync(source: str, destination: str, env: dict) -> dict:
    result = run_cp(source, destination, "--recursive", "--sync", "--json", env_extra=env)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    return {k: summary[k] for k in ("copied", "skipped", "failed")}


def on_moto(moto, seed: int) -> tuple:
    """(client, source bucket holding ``bodies(seed)``, empty bucket, those bodies, cp's environment)."""
    client = moto.client("s3")
    tag = uuid.uuid4().hex[:8]
    source, other = f"sync-src-{tag}", f"sync-dst-{tag}"
    for bucket in (source, other):
        client.create_bucket(Bucket=bucket)
    objects = bodies(seed)
    upload(client, source, objects)
    env = {"AWS_ACCESS_KEY_ID": moto.access_key, "AWS_SECRET_ACCESS_KEY": moto.secret_key,
           "AWS_DEFAULT_REGION": "us-east-1", "CLOUDMOVER_ENDPOINT_URL": moto.endpoint_url, **PLAN}
    return client, source, other, objects, env


def test_a_second_sync_between_buckets_copies_nothing_and_a_changed_object_is_copied(moto):
    client, src, dst, objects, env = on_moto(moto, 1)
    source_etags = etags(client, src, "shots/")
    assert sorted(e.rpartition("-")[2] for e in source_etags.values() if "-" in e) == ["1", "2", "3"]

    assert sync(f"s3://{src}/shots/", f"s3://{dst}/copy/", env) == {"copied": 5, "skipped": 0, "failed": 0}
    assert etags(client, dst, "copy/") == source_etags      # each in its source's parts, or whole
    assert sync(f"s3://{src}/shots/", f"s3://{dst}/copy/", env) == {"copied": 0, "skipped": 5, "failed": 0}

    changed = {"shots/mid.dpx": random.Random(2).randbytes(len(objects["shots/mid.dpx"])),
               "shots/deep/big.exr": random.Random(3).randbytes(len(objects["shots/deep/big.exr"]))}
    upload(client, src, changed)    # the same sizes, in the same parts: only the bytes differ
    assert sync(f"s3://{src}/shots/", f"s3://{dst}/copy/", env) == {"copied": 2, "skipped": 3, "failed": 0}
    for key, body in {**objects, **changed}.items():
        assert client.get_object(Bucket=dst, Key="copy/" + key[len("shots/"):])["Body"].read() == body, key


def test_syncs_between_a_bucket_and_a_disk_compare_files_in_the_objects_parts(moto, tmp_path):
    client, src, up, objects, env = on_moto(moto, 4)
    disk = tmp_path / "disk"

    assert sync(f"s3://{src}/shots/", str(disk), env) == {"copied": 5, "skipped": 0, "failed": 0}
    assert sync(f"s3://{src}/shots/", str(disk), env) == {"copied": 0, "skipped": 5, "failed": 0}
    # up from the disk: the big file in this job's own 8 MiB parts, which the next sync reads back
    assert sync(str(disk), f"s3://{up}/", env) == {"copied": 5, "skipped": 0, "failed": 0}
    assert etags(client, up, "")["deep/big.exr"].endswith("-2")
    assert sync(str(disk), f"s3://{up}/", env) == {"copied": 0, "skipped": 5, "failed": 0}

    mid = disk / "mid.dpx"
    edited = bytearray(mid.read_bytes())
    edited[6 * MiB] ^= 0xFF         # one byte of the second part, the size unchanged
    mid.write_bytes(bytes(edited))
    assert sync(str(disk), f"s3://{up}/", env) == {"copied": 1, "skipped": 4, "failed": 0}
    assert client.get_object(Bucket=up, Key="mid.dpx")["Body"].read() == bytes(edited)
    # and back down: the bucket's object differs from the file now, in one part
    assert sync(f"s3://{src}/shots/", str(disk), env) == {"copied": 1, "skipped": 4, "failed": 0}
    assert hashlib.md5(mid.read_bytes()).digest() == hashlib.md5(objects["shots/mid.dpx"]).digest()


def test_a_second_sync_copies_nothing_on_a_store_whose_copied_parts_make_other_etags(buckets, s3_env):
    """SeaweedFS answers a copied part with an ETag of its own kind, so a copy in parts never has
    its source's ETag there; copied whole, an object keeps it. The worker finds that out and copies
    whole on such a store (an object already copied in parts, once more), so its second sync skips
    everything too: the objects of a batch and the one copied in part tasks alike."""
    source, dest = buckets
    client = s3_env.client()
    objects = bodies(5)
    upload(client, source, objects)
    env = {"CLOUDMOVER_ENDPOINT_URL": s3_env.endpoint_url, **PLAN}
    assert sync(f"s3://{source}/shots/", f"s3://{dest}/", env) == {"copied": 5, "skipped": 0, "failed": 0}
    assert sync(f"s3://{source}/shots/", f"s3://{dest}/", env) == {"copied": 0, "skipped": 5, "failed": 0}
    for key, body in objects.items():
        assert client.get_object(Bucket=dest, Key=key[len("shots/"):])["Body"].read() == body, key


def test_an_object_rewritten_while_a_sync_copies_its_parts_fails_and_leaves_no_upload(buckets, s3_env):
    """The parts are copied only from the version the job listed (if-match): a source rewritten
    before its copy fails as changed, its upload is aborted (no parts left to pay for), and
    nothing lands at the destination. (moto ignores if-match on UploadPartCopy; SeaweedFS does not.)"""
    src, dst = buckets
    client = s3_env.client()
    key, body = "shots/mid.dpx", bodies(6)["shots/mid.dpx"]
    upload(client, src, {key: body})
    spec = {"region": s3_env.region, "endpoint_url": s3_env.endpoint_url,
            "credentials": Credentials(s3_env.access_key, s3_env.secret_key)}
    source, destination = open_store(StoreSpec("s3", src, **spec)), open_store(StoreSpec("s3", dst, **spec))
    listed = client.head_object(Bucket=src, Key=key)["ETag"].strip('"')
    upload(client, src, {key: random.Random(7).randbytes(len(body))})
    budget = strategies.MemoryBudget(64 * MiB)
    obj = {"key": key, "dest_key": "mid.dpx", "size": len(body), "etag": listed}
    try:
        with pytest.raises(errors.SourceChanged, match="changed after the job was planned"):
            strategies.copy_keeping_parts(source, destination, obj, memory=budget, copying=budget)
    finally:
        source.close()
        destination.close()
    assert client.list_multipart_uploads(Bucket=dst).get("Uploads", []) == []
    assert client.list_objects_v2(Bucket=dst).get("KeyCount") == 0


def test_a_sync_between_two_servers_keeps_the_parts_of_what_it_streams(buckets, s3_env, moto):
    """Between two endpoints every copy is a read streamed into a write: a source uploaded in
    parts is written in the same parts, which gives its copy the source's ETag (moto, the
    destination, follows AWS's rule; SeaweedFS, the source, too for uploaded parts). One uploaded
    whole but above the threshold is written in this job's parts, which no ETag compares with:
    every sync copies it again (the README says so)."""
    source, _ = buckets
    client, dest = s3_env.client(), f"sync-far-{uuid.uuid4().hex[:8]}"
    moto.client("s3").create_bucket(Bucket=dest)
    objects = bodies(8)
    upload(client, source, objects)
    folders = {"studio": {"bucket": source, "endpoint_url": s3_env.endpoint_url,
                          "access_key_id": s3_env.access_key, "secret_access_key": s3_env.secret_key},
               "vault": {"bucket": dest, "endpoint_url": moto.endpoint_url,
                         "access_key_id": moto.access_key, "secret_access_key": moto.secret_key}}
    env = {"CLOUDMOVER_FOLDERS": json.dumps(folders), **PLAN}
    assert sync("folder:studio/shots/", "folder:vault/copy/", env) == {"copied": 5, "skipped": 0, "failed": 0}
    kept = {k: v for k, v in etags(client, source, "shots/").items() if k != "flat.raw"}
    assert {k: v for k, v in etags(moto.client("s3"), dest, "copy/").items() if k != "flat.raw"} == kept
    assert sync("folder:studio/shots/", "folder:vault/copy/", env) == {"copied": 1, "skipped": 4, "failed": 0}
    for key, body in objects.items():
        assert moto.client("s3").get_object(Bucket=dest, Key="copy/" + key[len("shots/"):])["Body"].read() == body
