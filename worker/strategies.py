"""How one object, or one part, is copied and verified.

Server-side when source and destination share an endpoint and credentials
(CopyObject / UploadPartCopy: no bytes through the worker); otherwise a read
streamed into a write, with an MD5 computed on the way and sent as
Content-MD5 so the store verifies what it received. Every copy is checked
against the source's size and, where the source ETag is a plain MD5, its
content checksum. An ETag that looks like an MD5 is not taken for one where the
store says the object is encrypted with SSE-KMS or a customer's key (AWS's rule:
such ETags are no MD5 of the content); such copies are checked by size.
"""
from __future__ import annotations

import contextlib
import hashlib
import threading
from dataclasses import dataclass

from pipeline import errors
from pipeline.checksums import kept_part_size, plain_md5
from pipeline.planner import MAX_SINGLE_COPY

READ_CHUNK = 1 << 20
# endpoints whose copied parts (UploadPartCopy) do not add up to their source's ETag, as this
# process found: SeaweedFS gives each copied part an ETag of its own kind, no MD5 (and keeps a
# source's ETag through a whole CopyObject instead)
_COPIED_PARTS_LOSE_ETAG: set[str | None] = set()


class MemoryBudget:
    """Bounds bytes in use by all copies of a worker at once: held in buffers, or (a second
    budget) being copied by the store itself. A request above the limit takes the whole limit,
    so it waits for the others but never forever."""

    def __init__(self, limit: int):
        self.limit = limit
        self._free = limit
        self._cond = threading.Condition()

    def take(self, amount: int) -> int:
        amount = min(amount, self.limit)
        with self._cond:
            self._cond.wait_for(lambda: self._free >= amount)
            self._free -= amount
        return amount

    def give(self, amount: int) -> None:
        with self._cond:
            self._free += amount
            self._cond.notify_all()

    @contextlib.contextmanager
    def holding(self, amount: int):
        """``amount`` taken for the ``with`` block, given back however it ends."""
        held = self.take(amount)
        try:
            yield
        finally:
            self.give(held)

    @property
    def in_use(self) -> int:
        return self.limit - self._free


@contextlib.contextmanager
def reading(download, what: str):
    """The download's body, closed after use; a connection dropped mid-body
    becomes a retryable error (read again later)."""
    try:
        yield download.body
    except errors.PipelineError:
        raise
    except Exception as exc:
        raise errors.TransientStoreError(f"{what}: read interrupted: {exc}") from exc
    finally:
        download.body.close()


def read_verified(download, *, expected: int, etag: str | None, what: str) -> tuple[bytes, bytes]:
    """All bytes of a download and their MD5, checked against size and source checksum."""
    digest = hashlib.md5(usedforsecurity=False)
    chunks = []
    with reading(download, what) as body:
        for chunk in iter(lambda: body.read(READ_CHUNK), b""):
            digest.update(chunk)
            chunks.append(chunk)
    data = b"".join(chunks)
    if len(data) != expected:
        raise errors.VerificationFailed(f"{what}: read {len(data)} bytes, expected {expected}")
    source_md5 = plain_md5(etag)
    if source_md5 and digest.hexdigest() != source_md5:
        raise errors.VerificationFailed(f"{what}: content checksum differs from the source ETag")
    return data, digest.digest()


@dataclass
class Read:
    """A whole object read and checked: its bytes, their MD5, what goes with it."""
    data: bytes
    md5: bytes
    attrs: object       # pipeline.store.ObjectAttributes, tags included


def read_object(source, key: str, *, size: int, etag: str | None, what: str) -> Read:
    """Read a whole object, verified against its listed size and checksum."""
    download = source.get(key, etag=etag)
    data, md5 = read_verified(download, expected=size, what=what,
                              etag=(etag or download.etag) if download.etag_is_md5 else None)
    attrs = download.attributes
    if download.tag_count:
        attrs.tags = source.tags(key)
    return Read(data, md5, attrs)


def put_verified(destination, dest_key: str, data: bytes, *, md5: bytes, attrs, what: str) -> str:
    """Write ``data`` and check what landed: its MD5 ETag, or else its size."""
    landed = destination.put(dest_key, data, md5=md5, attrs=attrs)
    if not plain_md5(landed):
        _verify_size(destination, dest_key, len(data), what)
    elif landed != md5.hex():
        raise errors.VerificationFailed(f"{what}: the store recorded checksum {landed}, sent {md5.hex()}")
    return f"md5:{md5.hex()}"


def copy_object(source, destination, obj: dict, *, memory: MemoryBudget | None, copying: MemoryBudget) -> str:
    """Copy one whole object; the checksum that verified it, as 'algorithm:value'. ``memory``
    bounds the bytes a streamed copy holds (None: the caller knows the copy is server-side);
    ``copying`` those a server-side copy asks the store to move while it runs (many small
    objects go at once, few large ones)."""
    key, dest_key, size, etag = obj["key"], obj["dest_key"], obj["size"], obj.get("etag")
    what = f"copy {source.spec.url(key)}"
    if source.spec.same_endpoint(destination.spec):
        try:
            with copying.holding(size):
                landed = destination.copy_from(source.spec, key, dest_key, etag=etag)
        except errors.NoSuchKey:
            if not (size == 0 and key.endswith("/")):
                raise
            # a folder marker (an S3 console's folder): SeaweedFS keeps one as a directory, which
            # CopyObject says does not exist and GET reads; it is written anew from what GET says
            return _read_and_put(source, destination, key, dest_key, size=0, etag=etag, what=what)
        if plain_md5(etag) and landed:      # None: the copy's ETag is no MD5 (an encrypting bucket)
            if landed == etag:
                return f"md5:{etag}"
            # the listing cannot say whether the source's ETag is an MD5: its HEAD can
            found = source.head(key)
            if found is None or found.etag_is_md5:
                raise errors.VerificationFailed(f"{what}: the copy's ETag {landed} differs from {etag}")
        return _verify_size(destination, dest_key, size, what)
    with memory.holding(size):
        return _read_and_put(source, destination, key, dest_key, size=size, etag=etag, what=what)


def copy_keeping_parts(source, destination, obj: dict, *, memory: MemoryBudget, copying: MemoryBudget) -> str:
    """Sync mode's copy of one object: one uploaded in parts goes in the same parts, so that its
    copy has its ETag (S3's rule: the MD5 of the parts' MD5s) and the next sync finds it
    unchanged. A whole CopyObject gives the copy the MD5 of its bytes instead, which no ETag of
    parts compares with. Anything else goes as ``copy_object`` copies it."""
    key, dest_key, size, etag = obj["key"], obj["dest_key"], obj["size"], obj.get("etag")
    server_side = source.spec.same_endpoint(destination.spec)
    part_size = None
    if not (server_side and destination.spec.endpoint_url in _COPIED_PARTS_LOSE_ETAG):
        part_size = kept_part_size(source, destination, key, size, etag)
    if part_size is None:
        return copy_object(source, destination, obj, memory=memory, copying=copying)
    upload_id = destination.create_multipart(dest_key, source.attributes(key))
    try:
        parts = []
        for number, offset in enumerate(range(0, size, part_size), start=1):
            part = {"key": key, "dest_key": dest_key, "upload_id": upload_id, "part_number": number,
                    "offset": offset, "length": min(part_size, size - offset), "etag": etag}
            with copying.holding(part["length"] if server_side else 0):
                part_etag, _ = copy_part(source, destination, part, memory=memory)
            parts.append({"part_number": number, "etag": part_etag, "size": part["length"]})
        landed = destination.complete_multipart(dest_key, upload_id, parts)
    except BaseException:
        with contextlib.suppress(Exception):
            destination.abort_multipart(dest_key, upload_id)
        raise
    return _settle_kept_parts(source, destination, obj, parts, landed, memory=memory, copying=copying)


def _settle_kept_parts(source, destination, obj: dict, parts: list[dict], landed: str, *,
                       memory: MemoryBudget, copying: MemoryBudget) -> str:
    """The check of a sync's copy made in parts (``landed``: its ETag). Copied parts whose ETags
    are no MD5s (SeaweedFS's) add up to no source's ETag, while a whole CopyObject keeps it there:
    such a copy is made again whole (up to 5 GiB), so that the next sync finds it unchanged. (Parts
    with MD5-like ETags that still made another ETag are an encrypting bucket's, where no copy
    keeps it, or another layout's: that copy stands.)"""
    etag = obj.get("etag")
    if landed and landed == etag:
        return f"etag:{etag}"
    checked = _verify_size(destination, obj["dest_key"], obj["size"], f"copy {source.spec.url(obj['key'])}")
    if source.spec.same_endpoint(destination.spec) and not all(plain_md5(p["etag"]) for p in parts):
        _COPIED_PARTS_LOSE_ETAG.add(destination.spec.endpoint_url)
        if obj["size"] <= MAX_SINGLE_COPY:
            return copy_object(source, destination, obj, memory=memory, copying=copying)
    return checked


def _read_and_put(source, destination, key: str, dest_key: str, *, size: int, etag: str | None, what: str) -> str:
    read = read_object(source, key, size=size, etag=etag, what=what)
    return put_verified(destination, dest_key, read.data, md5=read.md5, attrs=read.attrs, what=what)


def _verify_size(destination, dest_key: str, size: int, what: str) -> str:
    found = destination.head(dest_key)
    if found is None or found.size != size:
        got = "nothing" if found is None else f"{found.size} bytes"
        raise errors.VerificationFailed(f"{what}: the destination holds {got}, expected {size} bytes")
    return f"size:{size}"


def copy_part(source, destination, task: dict, *, memory: MemoryBudget) -> tuple[str, str | None]:
    """Copy one part; its ETag at the destination and the checksum sent (if streamed)."""
    what = f"copy part {task['part_number']} of {source.spec.url(task['key'])}"
    if source.spec.same_endpoint(destination.spec):
        etag = destination.upload_part_copy(
            source.spec, task["key"], task["dest_key"], upload_id=task["upload_id"],
            part_number=task["part_number"], offset=task["offset"], length=task["length"], etag=task.get("etag"))
        return etag, None
    with memory.holding(task["length"]):
        download = source.get(task["key"], etag=task.get("etag"), offset=task["offset"], length=task["length"])
        data, md5 = read_verified(download, expected=task["length"], etag=None, what=what)
        etag = destination.upload_part(task["dest_key"], task["upload_id"], task["part_number"], data,
                                       md5=md5, offset=task["offset"])
    return etag, f"md5:{md5.hex()}"


def completed_object(task: dict) -> dict:
    """The object a CompleteMultipart task finishes, as a copy task names one."""
    return {"key": task["key"], "dest_key": task["dest_key"], "size": task["object_size"], "etag": task.get("etag")}


def complete_upload(source, destination, task: dict, *, memory: MemoryBudget, copying: MemoryBudget) -> str:
    """Close a multipart upload and check the object that results; idempotent. A copy that
    should have its source's ETag (``sync``) is settled as ``copy_keeping_parts`` settles one."""
    landed = destination.complete_multipart(task["dest_key"], task["upload_id"], task["parts"])
    if task.get("sync"):
        return _settle_kept_parts(source, destination, completed_object(task), task["parts"], landed,
                                  memory=memory, copying=copying)
    return _verify_size(destination, task["dest_key"], task["object_size"],
                        f"complete {destination.spec.url(task['dest_key'])}")
