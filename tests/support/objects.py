"""Test corpora: put objects into a bucket, check that a copy holds exactly them."""
from __future__ import annotations

import hashlib
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MiB = 1 << 20
THREADS = 8   # below botocore's default pool of 10 connections


def small_and_large(seed: int, *, small: int, large: tuple[int, ...] = ()) -> dict[str, bytes]:
    """``small`` objects of up to 4 KiB, one object per size in ``large``, and a zero-byte object."""
    rng = random.Random(seed)
    objects = {f"small/{i:05d}": rng.randbytes(rng.randint(1, 4096)) for i in range(small)}
    objects.update({f"large/object-{n}": rng.randbytes(size) for n, size in enumerate(large)})
    objects["empty"] = b""
    return objects


def put_objects(client, bucket: str, objects: dict[str, bytes]) -> None:
    def put(item):
        key, body = item
        client.put_object(Bucket=bucket, Key=key, Body=body)
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(put, objects.items()))


def listed_keys(client, bucket: str, prefix: str = "") -> list[str]:
    """Every key under ``prefix``, as many times as the store lists it."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", ())]


def assert_same_objects(client, bucket: str, objects: dict[str, bytes], prefix: str = "") -> None:
    """The bucket holds, under ``prefix``, exactly ``objects``, byte for byte (SHA-256)."""
    assert sorted(listed_keys(client, bucket, prefix)) == sorted(prefix + key for key in objects)

    def differs(item):
        key, body = item
        data = client.get_object(Bucket=bucket, Key=prefix + key)["Body"].read()
        return None if hashlib.sha256(data).digest() == hashlib.sha256(body).digest() else key
    with ThreadPoolExecutor(THREADS) as pool:
        assert [key for key in pool.map(differs, objects.items()) if key] == []


def assert_same_files(root: Path, objects: dict[str, bytes]) -> None:
    """The directory holds exactly ``objects`` as files, byte for byte (SHA-256)."""
    found = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert found == sorted(objects)
    for key, body in objects.items():
        assert hashlib.sha256((root / key).read_bytes()).digest() == hashlib.sha256(body).digest(), key
