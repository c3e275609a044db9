"""The shared read and write checks every copy strategy and the codec stage go through."""
import hashlib
import io

import pytest

from pipeline import errors
from pipeline.store import Download, ObjectAttributes, ObjectInfo
from worker import strategies


class DroppingBody(io.BytesIO):
    """A response body whose connection drops after the first chunk."""

    def read(self, size=-1):
        if self.tell():
            raise ConnectionResetError("connection reset by peer")
        return super().read(4)


def test_a_connection_dropped_mid_body_is_retryable_and_the_body_is_closed():
    body = DroppingBody(b"0123456789")
    download = Download(body, 10, None, ObjectAttributes())
    with pytest.raises(errors.TransientStoreError, match="read s3://b/k: read interrupted: connection reset"):
        strategies.read_verified(download, expected=10, etag=None, what="read s3://b/k")
    assert body.closed


class Store:
    """A destination that records what it was given and answers with ``etag``."""

    def __init__(self, etag, size=None):
        self.etag, self.size, self.objects = etag, size, {}

    def put(self, key, data, *, md5, attrs):
        self.objects[key] = data
        return self.etag

    def head(self, key):
        size = len(self.objects[key]) if self.size is None else self.size
        return ObjectInfo(key, size, None)


DATA = b"frame" * 100
MD5 = hashlib.md5(DATA).digest()


def test_put_verified_accepts_the_md5_etag_of_what_it_sent():
    assert strategies.put_verified(Store(MD5.hex()), "k", DATA, md5=MD5, attrs=None, what="w") == f"md5:{MD5.hex()}"


def test_put_verified_refuses_a_different_md5_etag():
    with pytest.raises(errors.VerificationFailed, match="the store recorded checksum 0{32}"):
        strategies.put_verified(Store("0" * 32), "k", DATA, md5=MD5, attrs=None, what="w")


def test_put_verified_checks_the_size_when_the_etag_is_not_an_md5():
    assert strategies.put_verified(Store("abc-2"), "k", DATA, md5=MD5, attrs=None, what="w").startswith("md5:")
    with pytest.raises(errors.VerificationFailed, match="the destination holds 3 bytes, expected 500"):
        strategies.put_verified(Store("abc-2", size=3), "k", DATA, md5=MD5, attrs=None, what="w")


@pytest.mark.parametrize("key, complaint", [
    ("frames/a\0b.dpx", "holds a NUL character, which no file name can"),
    ("../outside.dpx", "would land outside"),
    ("frames/../b.dpx", "holds an empty, '.' or '..' part: on disk it would be b.dpx, which another key names"),
    ("frames//b.dpx", "holds an empty, '.' or '..' part: on disk it would be frames/b.dpx"),
    ("./b.dpx", "holds an empty, '.' or '..' part"),
    ("n" * 300 + "/x.dpx", "File name too long"),
])
def test_a_key_no_file_can_be_named_after_fails_that_object_alone(tmp_path, key, complaint):
    """Keys S3 allows but a disk does not: a permanent error for that object (the rest of its
    batch still copies), never an exception that would fail the whole task."""
    from pipeline.localstore import LocalStore
    from pipeline.store import StoreSpec
    store = LocalStore(StoreSpec("local", str(tmp_path / "root")))
    with pytest.raises(errors.PermanentError, match=complaint):
        strategies.put_verified(store, key, DATA, md5=MD5, attrs=ObjectAttributes(), what="w")
    assert strategies.put_verified(store, "frames/fine.dpx", DATA, md5=MD5, attrs=ObjectAttributes(),
                                   what="w") == f"md5:{MD5.hex()}"


class SameEndpoint:
    """Source and destination on one endpoint: ``copy_from`` answers ``landed``; the source's
    HEAD says whether its ETag is an MD5 (``source_md5``)."""

    def __init__(self, landed, *, source_md5: bool):
        from pipeline.store import StoreSpec
        self.spec = StoreSpec("s3", "b", "us-east-1", "http://127.0.0.1:1")
        self.landed, self.source_md5 = landed, source_md5

    def copy_from(self, source, key, dest_key, *, etag):
        return self.landed

    def head(self, key):
        return ObjectInfo(key, len(DATA), MD5.hex(), etag_is_md5=self.source_md5)


@pytest.mark.parametrize("source_md5", [True, False])
def test_a_server_side_copy_whose_etag_differs_is_refused_unless_the_source_etag_is_no_md5(source_md5):
    """The listed ETag looks like an MD5; the copy's differs. Where the source's HEAD says its
    ETag is an MD5 (not encrypted), the copy did not verify; where it is no MD5 (SSE-KMS), the
    copy is checked by size."""
    store = SameEndpoint("0" * 32, source_md5=source_md5)
    obj = {"key": "k", "dest_key": "k2", "size": len(DATA), "etag": MD5.hex()}
    budget = strategies.MemoryBudget(1 << 20)
    if source_md5:
        with pytest.raises(errors.VerificationFailed, match=f"the copy's ETag 0{{32}} differs from {MD5.hex()}"):
            strategies.copy_object(store, store, obj, memory=None, copying=budget)
    else:
        assert strategies.copy_object(store, store, obj, memory=None, copying=budget) == f"size:{len(DATA)}"
    assert strategies.copy_object(SameEndpoint(MD5.hex(), source_md5=True), SameEndpoint(MD5.hex(), source_md5=True),
                                  obj, memory=None, copying=budget) == f"md5:{MD5.hex()}"



class Parted:
    """A bucket-like store whose objects were uploaded in parts of ``first`` bytes (None: whole)."""

    def __init__(self, first):
        self.first = first

    def part_size(self, key):
        return self.first


@pytest.mark.parametrize("etag, size, first, kept", [
    ("a" * 32 + "-3", 11 << 20, 5 << 20, 5 << 20),     # 5 + 5 + 1 MiB: kept
    ("a" * 32 + "-1", 1000, 1000, 1000),                # one part, however small
    ("a" * 32, 11 << 20, None, None),                   # uploaded whole
    ("a" * 32 + "-3", 11 << 20, None, None),            # the store does not say
    ("a" * 32 + "-3", 11 << 20, 8 << 20, None),         # 8 MiB parts make two, not three
    ("a" * 32 + "-3", 5 << 20, 2 << 20, None),          # parts below S3's 5 MiB: no store takes them
])
def test_a_sync_keeps_only_a_layout_that_fits_and_any_s3_store_takes(etag, size, first, kept):
    from pipeline.checksums import kept_part_size
    assert kept_part_size(Parted(first), Parted(None), "k", size, etag) == kept
    assert kept_part_size(Parted(first), object(), "k", size, etag) is None     # to disk: no parts to keep
