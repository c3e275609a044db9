"""Copies to, from and between buckets that encrypt with SSE-KMS (acceptance 1 and 7 of the
copy pipeline, on AWS's rules).

AWS gives such objects ETags that are no MD5 of their content, though they look like one. A
copy that took them for MD5s failed every object as "differs from the source" (and, written
into such a bucket, as "the store recorded checksum …"). moto encrypts by a bucket's default
and says so, but keeps MD5 ETags: a proxy gives them AWS's (see ``support.kmsproxy``).
"""
from __future__ import annotations

import hashlib
import json
import random
import uuid

import boto3

from support.kmsproxy import KmsEtagProxy
from test_cp import run_cp

MiB = 1 << 20
KMS = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/cm"}}]}


def test_copies_to_from_and_between_kms_buckets_verify_by_what_the_store_says(moto, tmp_path):
    client = moto.client("s3")
    tag = uuid.uuid4().hex[:8]
    kms_a, kms_b, plain = f"kms-a-{tag}", f"kms-b-{tag}", f"plain-{tag}"
    for bucket in (kms_a, kms_b, plain):
        client.create_bucket(Bucket=bucket)
    for bucket in (kms_a, kms_b):
        client.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=KMS)
    rng = random.Random(7)
    bodies = {"frames/a.dpx": rng.randbytes(3000), "frames/b.dpx": rng.randbytes(5000), "frames/empty": b"",
              "frames/big.exr": rng.randbytes(6 * MiB + 5)}
    for key, body in bodies.items():
        client.put_object(Bucket=kms_a, Key=key, Body=body, ContentType="image/x-dpx")
    env = {"AWS_ACCESS_KEY_ID": moto.access_key, "AWS_SECRET_ACCESS_KEY": moto.secret_key,
           "AWS_DEFAULT_REGION": "us-east-1", "CLOUDMOVER_MULTIPART_THRESHOLD": str(5 * MiB),
           "CLOUDMOVER_PART_SIZE": str(5 * MiB)}
    local = tmp_path / "disk"
    with KmsEtagProxy(moto.endpoint_url, kms_buckets={kms_a, kms_b}) as proxy:
        through = boto3.client("s3", endpoint_url=proxy.endpoint_url, region_name="us-east-1",
                               aws_access_key_id=moto.access_key, aws_secret_access_key=moto.secret_key)
        seen = through.head_object(Bucket=kms_a, Key="frames/a.dpx")
        assert seen["ServerSideEncryption"] == "aws:kms"
        assert seen["ETag"].strip('"') != hashlib.md5(bodies["frames/a.dpx"]).hexdigest()
        for source, destination in ((f"s3://{kms_a}/frames/", f"s3://{kms_b}/both/"),     # server-side
                                    (f"s3://{kms_a}/frames/", f"s3://{plain}/from/"),     # the source encrypts
                                    (f"s3://{plain}/from/", f"s3://{kms_b}/into/"),       # the destination does
                                    (f"s3://{kms_a}/frames/", str(local)),                # read to disk
                                    (str(local), f"s3://{kms_b}/up/")):                   # written from disk
            result = run_cp(source, destination, "--recursive", "--json", "--endpoint-url", proxy.endpoint_url,
                            env_extra=env)
            assert result.returncode == 0, f"{source} -> {destination}: {result.stdout}{result.stderr}"
            summary = json.loads(result.stdout)
            assert (summary["copied"], summary["failed"]) == (len(bodies), 0), summary
    for bucket, prefix in ((kms_b, "both/"), (plain, "from/"), (kms_b, "into/"), (kms_b, "up/")):
        for key, body in bodies.items():
            got = client.get_object(Bucket=bucket, Key=prefix + key[len("frames/"):])
            assert got["Body"].read() == body, (bucket, prefix, key)
    for key, body in bodies.items():
        assert (local / key[len("frames/"):]).read_bytes() == body
