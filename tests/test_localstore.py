"""A local directory as a store: its listing pages, in key order, the first one short when asked."""
from __future__ import annotations

import hashlib

from pipeline.store import StoreSpec, open_store


def test_listing_pages_every_file_in_key_order_with_a_short_first_page(tmp_path):
    names = ["a", "b/c", "b/d/e", "b/f", "g", "h/i"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(name.encode())
    store = open_store(StoreSpec("local", str(tmp_path)))
    pages = [[o.key for o in page] for page in store.list("", page_size=2, first_page_size=1)]
    assert [len(page) for page in pages if page] == [1, 2, 2, 1]
    assert sum(pages, []) == names
    assert [o.size for page in store.list("b/", page_size=10) for o in page] == [3, 5, 3]
    after = [o.key for page in store.list("", start_after="b/d/e", first_page_size=1) for o in page]
    assert after == ["b/f", "g", "h/i"]


def test_names_of_every_length_land_and_only_writes_in_progress_are_unlisted(tmp_path):
    """A file name may take 255 bytes: writing it goes through a temporary name of fixed length
    (one after the target's name was too long from 211 bytes on). A listing skips those
    temporary names, and only them: a user's file may hold the mark in its name."""
    from pipeline.store import ObjectAttributes
    store = open_store(StoreSpec("local", str(tmp_path)))
    longest, long_parts = "l" * 255, "p" * 250 + ".dpx"
    data = b"frame" * 1000
    md5 = hashlib.md5(data).digest()
    store.put(longest, data, md5=md5, attrs=ObjectAttributes())
    upload = store.create_multipart(long_parts, ObjectAttributes())
    store.upload_part(long_parts, upload, 1, data[:3000], md5=md5, offset=0)
    store.upload_part(long_parts, upload, 2, data[3000:], md5=md5, offset=3000)
    in_progress = store.create_multipart("unfinished.bin", ObjectAttributes())
    (tmp_path / ".old.bin.cloudmover-0123456789abcdef0123456789abcdef").write_bytes(b"left by an older version")
    for name in ("notes.cloudmover-draft.txt", ".cloudmover-settings", "x.cloudmover-0123"):
        (tmp_path / name).write_bytes(b"mine")
    assert [o.key for page in store.list("") for o in page] == \
        [".cloudmover-settings", longest, "notes.cloudmover-draft.txt", "x.cloudmover-0123"]
    store.complete_multipart(long_parts, upload, [{"size": 3000}, {"size": len(data) - 3000}])
    assert (tmp_path / longest).read_bytes() == data and (tmp_path / long_parts).read_bytes() == data
    store.abort_multipart("unfinished.bin", in_progress)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".cloudmover-settings", ".old.bin.cloudmover-0123456789abcdef0123456789abcdef", longest, long_parts,
         "notes.cloudmover-draft.txt", "x.cloudmover-0123"])


def test_a_file_written_while_it_is_read_is_refused_as_changed(tmp_path):
    """A read gives the file as it was when opened, or fails: a file written in place half-way
    through would give bytes of neither version (its size alone would not tell)."""
    import os

    import pytest

    from pipeline import errors
    store = open_store(StoreSpec("local", str(tmp_path)))
    (tmp_path / "frame.dpx").write_bytes(b"a" * 4096)
    whole = store.get("frame.dpx", etag=None)
    assert whole.body.read() == b"a" * 4096        # unchanged: read to the end
    reading = store.get("frame.dpx", etag=None)
    assert reading.body.read(1000) == b"a" * 1000
    with open(tmp_path / "frame.dpx", "r+b") as writer:     # rewritten in place, same size
        writer.seek(3000)
        writer.write(b"b" * 1000)
    os.utime(tmp_path / "frame.dpx", ns=(1, 1))     # as a second write a moment later would leave it
    with pytest.raises(errors.SourceChanged, match="the file changed while it was read"):
        reading.body.read()
    part = store.get("frame.dpx", etag=None, offset=1000, length=1000)
    assert part.body.read() == b"a" * 1000          # a range read to its end checks the same way


def test_a_file_hashes_in_parts_to_the_etag_of_an_s3_upload_in_those_parts(moto, tmp_path):
    """Each size against a part boundary (one short, on it, one over, a single part, nothing):
    the ETag moto's S3 gives the same bytes uploaded in parts of that size, as AWS's rule says."""
    import random
    import uuid

    client = moto.client("s3")
    bucket = f"parts-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    store = open_store(StoreSpec("local", str(tmp_path)))
    part = 5 << 20
    rng = random.Random(9)
    for size in (2 * part - 1, 2 * part, 2 * part + 1, 1000, 0):
        body = rng.randbytes(size)
        (tmp_path / f"f{size}").write_bytes(body)
        key = f"f{size}"
        upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        pieces = [body[i:i + part] for i in range(0, size, part)] or [b""]
        listed = [{"PartNumber": n, "ETag": client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id,
                                                               PartNumber=n, Body=piece)["ETag"]}
                  for n, piece in enumerate(pieces, start=1)]
        client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                         MultipartUpload={"Parts": listed})
        etag = client.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
        assert store.multipart_etag(key, part) == etag, size
        assert store.checksum(key) == hashlib.md5(body).hexdigest()
