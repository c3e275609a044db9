"""The S3 store against a real server, and the lean request path's signer."""
from __future__ import annotations

import hashlib

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
    assert copied["ETag"] == etag
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
