"""The S3 store against a real server, the lean request path's signer, and what a plain copy loads."""
from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from pipeline import errors
from pipeline.credentials import Credentials
from pipeline.s3store import classify
from pipeline.sigv4 import EMPTY_SHA256, SigV4
from pipeline.store import ObjectAttributes, StoreSpec, open_store


def test_signer_matches_the_aws_documented_example():
    # "GET Object" example of the S3 SigV4 documentation (header-based authentication).
    creds = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    signed = SigV4(lambda: creds, "us-east-1").sign("GET", "examplebucket.s3.amazonaws.com", "/test.txt",
                                                    {"Range": "bytes=0-9"}, payload_sha256=EMPTY_SHA256,
                                                    now=1369353600)
    assert signed["authorization"].endswith(
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")


@pytest.mark.parametrize("status, code, expected", [
    (503, "SlowDown", errors.TransientStoreError), (502, "BadGateway", errors.TransientStoreError),
    (429, "TooManyRequests", errors.TransientStoreError), (403, "SignatureDoesNotMatch", errors.AccessDenied),
    (404, "NoSuchBucket", errors.NoSuchBucket), (412, "PreconditionFailed", errors.SourceChanged),
    (400, "InvalidArgument", errors.StoreError),
])
def test_errors_are_classified_by_what_to_do_next(status, code, expected):
    assert type(classify(what="x", status=status, code=code, message="m")) is expected


@pytest.fixture
def store(buckets, s3_env):
    spec = StoreSpec("s3", buckets[0], "us-east-1", s3_env.endpoint_url,
                     Credentials(s3_env.access_key, s3_env.secret_key))
    opened = open_store(spec)
    yield opened
    opened.close()


KEYS = ["plain", "with space", "ünï/cødé", "a+b=c%d", "deep/er/still/x~y"]


@pytest.mark.parametrize("key", KEYS)
def test_lean_put_head_copy_delete_round_trip(store, s3_env, key):
    body = key.encode() * 1000
    attrs = ObjectAttributes(content_type="image/x-dpx", metadata={"camera": "a"}, tags={"t": "1 2"},
                             headers={"CacheControl": "max-age=60"})
    etag = store.put(key, body, md5=hashlib.md5(body).digest(), attrs=attrs)
    assert etag == hashlib.md5(body).hexdigest()
    assert store.head(key).size == len(body)
    copied = store.copy_from(store.spec, key, "copy/" + key, etag=etag)
    assert copied == etag
    got = s3_env.client().get_object(Bucket=store.spec.bucket, Key="copy/" + key)
    assert got["Body"].read() == body and got["ContentType"] == "image/x-dpx"
    assert got["Metadata"] == {"camera": "a"} and got["CacheControl"] == "max-age=60"
    store.delete(key)
    assert store.head(key) is None


def test_lean_path_refuses_a_changed_source_and_wrong_keys(store, s3_env, buckets):
    store.put("k", b"v1", md5=hashlib.md5(b"v1").digest(), attrs=ObjectAttributes())
    with pytest.raises(errors.SourceChanged):
        store.copy_from(store.spec, "k", "k2", etag=hashlib.md5(b"other").hexdigest())
    wrong = open_store(StoreSpec("s3", buckets[0], "us-east-1", s3_env.endpoint_url,
                                 Credentials(s3_env.access_key, "wrong-secret")))
    with pytest.raises(errors.AccessDenied) as denied:
        wrong.put("x", b"x", md5=hashlib.md5(b"x").digest(), attrs=ObjectAttributes())
    assert "wrong-secret" not in str(denied.value)
    wrong.close()


def test_lean_listing_pages_keys_as_boto3_lists_them(store, s3_env):
    keys = sorted(KEYS + ["deep/er/a", "deep/z", "top"])
    for key in keys:
        store.put(key, key.encode(), md5=hashlib.md5(key.encode()).digest(), attrs=ObjectAttributes())
    client = s3_env.client()
    expected = [(o["Key"], o["Size"], o["ETag"].strip('"'))
                for page in client.get_paginator("list_objects_v2").paginate(Bucket=store.spec.bucket)
                for o in page.get("Contents", ())]
    pages = list(store.list("", page_size=2))
    assert [(o.key, o.size, o.etag) for page in pages for o in page] == expected
    assert max(len(page) for page in pages) == 2
    after = [o.key for page in store.list("deep/", start_after="deep/er/a") for o in page]
    assert after == [k for k in keys if k.startswith("deep/") and k > "deep/er/a"]
    assert [o.key for page in store.list("deep/", recursive=False) for o in page] == ["deep/z"]
    quick = list(store.list("", page_size=3, first_page_size=1))   # then on with the first's token
    assert [len(page) for page in quick][:2] == [1, 3]
    assert [(o.key, o.size, o.etag) for page in quick for o in page] == expected
    # without recursion a page can hold fewer objects than asked (folders take room): still all of them
    folders = [o.key for page in store.list("", recursive=False, page_size=2, first_page_size=1) for o in page]
    assert folders == [k for k in keys if "/" not in k]


def test_lean_multipart_copy_keeps_bytes_metadata_and_tags(store, s3_env):
    client = s3_env.client()
    body = bytes(range(256)) * (44 << 10)   # 11 MiB: two parts of at least 5 MiB
    client.put_object(Bucket=store.spec.bucket, Key="big ü+1", Body=body, ContentType="image/x-dpx",
                      Metadata={"camera": "a"}, CacheControl="max-age=60", Tagging="t=1%202")
    attrs = store.attributes("big ü+1")
    assert (attrs.content_type, attrs.metadata, attrs.headers, attrs.tags) == (
        "image/x-dpx", {"camera": "a"}, {"CacheControl": "max-age=60"}, {"t": "1 2"})
    source = store.head("big ü+1")
    upload_id = store.create_multipart("copy/big ü+1", attrs)
    half = 6 << 20
    parts = [{"part_number": number, "etag": store.upload_part_copy(
                  store.spec, "big ü+1", "copy/big ü+1", upload_id=upload_id, part_number=number,
                  offset=offset, length=length, etag=source.etag)}
             for number, (offset, length) in ((2, (half, len(body) - half)), (1, (0, half)))]
    store.complete_multipart("copy/big ü+1", upload_id, parts)
    got = client.get_object(Bucket=store.spec.bucket, Key="copy/big ü+1")
    assert got["Body"].read() == body and got["ContentType"] == "image/x-dpx"
    assert got["Metadata"] == {"camera": "a"} and got["CacheControl"] == "max-age=60"
    assert client.get_object_tagging(Bucket=store.spec.bucket, Key="copy/big ü+1")["TagSet"] == [
        {"Key": "t", "Value": "1 2"}]
    with pytest.raises(errors.SourceChanged):
        store.upload_part_copy(store.spec, "big ü+1", "copy/again", upload_id=store.create_multipart(
            "copy/again", attrs), part_number=1, offset=0, length=half, etag=hashlib.md5(b"x").hexdigest())


@pytest.mark.parametrize("bucket, secret, expected", [
    ("no-such-bucket-here", None, errors.NoSuchBucket), (None, "wrong-secret", errors.AccessDenied)])
def test_lean_bucket_check_says_what_is_wrong(store, s3_env, bucket, secret, expected):
    store.check(write=True)
    credentials = Credentials(s3_env.access_key, secret) if secret else None
    other = open_store(StoreSpec("s3", bucket or store.spec.bucket, "us-east-1", s3_env.endpoint_url, credentials))
    try:
        with pytest.raises(expected):
            other.check()
    finally:
        other.close()


def test_plain_copies_load_neither_boto3_nor_the_codec():
    """Worth ~0.4 s of CPU per process each; a short job pays it in the head node and every worker."""
    code = ("import sys, headnode.cli, headnode.node, headnode.progress, worker.main; "
            "print(sorted(m for m in ('boto3', 'botocore', 'numpy', 'codec', 'rich', 'yaml') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


def test_kombu_loads_without_yaml_which_stays_importable_and_is_refused_on_the_bus():
    """PyYAML, which kombu loads to register a serializer the bus never uses, was ~20 ms of each start."""
    code = ("import sys, pipeline.bus, kombu.serialization as ks, yaml; "
            "print(callable(yaml.safe_load), 'application/json' in ks.registry._decoders); "
            "ks.loads(b'a: 1', 'application/x-yaml', 'utf-8', accept={'application/x-yaml'})")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert loaded.stdout.split() == ["True", "True"]
    assert "SerializerNotInstalled" in loaded.stderr   # a YAML message: refused, never parsed


def test_part_size_says_a_layout_or_nothing_and_never_hides_a_refusal(store, s3_env):
    """``part_size`` (HEAD ?partNumber=1): the first part's length for an object uploaded in parts,
    None for a store that refuses the question (a sync then copies whole); a denial still fails,
    as every other request's does. An object put whole is one part to SeaweedFS (AWS does not
    say); callers ask only about objects whose ETag says parts."""
    import io

    from boto3.s3.transfer import TransferConfig
    from support.faultproxy import FaultProxy

    client, bucket = s3_env.client(), store.spec.bucket
    client.upload_fileobj(io.BytesIO(bytes(11 << 20)), bucket, "in-parts", Config=TransferConfig(
        multipart_threshold=5 << 20, multipart_chunksize=5 << 20))
    client.put_object(Bucket=bucket, Key="whole", Body=b"x" * 1000)
    assert (store.part_size("in-parts"), store.part_size("whole"), store.part_size("missing")) == (5 << 20, 1000, None)
    credentials = Credentials(s3_env.access_key, s3_env.secret_key)
    for error, expected in (((400, "InvalidArgument", "no part numbers here"), None),
                            ((403, "AccessDenied", "denied"), errors.AccessDenied)):
        with FaultProxy(s3_env.endpoint_url, fault_rate=1.0, methods={"HEAD"}, error=error) as proxy:
            behind = open_store(StoreSpec("s3", bucket, "us-east-1", proxy.endpoint_url, credentials))
            try:
                if expected is None:
                    assert behind.part_size("in-parts") is None
                else:
                    with pytest.raises(expected):
                        behind.part_size("in-parts")
            finally:
                behind.close()
