"""Comparing objects by content checksum across stores.

An S3 ETag is an MD5 of the content only for single-part, unencrypted
uploads. A multipart upload's (``…-N``) is the MD5 of its N parts' MD5s: the
same bytes in the same parts give the same one, so two such ETags compare, and
a local file compares with one once it is hashed in that object's parts.
Anything else is compared by other means or not at all, never guessed.
"""
from __future__ import annotations

import hashlib
import re

from pipeline.planner import MAX_PART, MIN_PART

_PLAIN_MD5 = re.compile(r"^[0-9a-f]{32}$")
_MULTIPART = re.compile(r"^[0-9a-f]{32}-([1-9][0-9]{0,4})$")


def etag_is_md5(headers) -> bool:
    """Whether an S3 answer's ETag can be an MD5 of the content, by its encryption headers
    (lower-cased names): AWS gives objects encrypted with SSE-KMS or DSSE-KMS, or with a
    customer's key (SSE-C), ETags that are no MD5 of their content, though they look like one."""
    return not ((headers.get("x-amz-server-side-encryption") or "").startswith("aws:kms")
                or headers.get("x-amz-server-side-encryption-customer-algorithm"))


def plain_md5(etag: str | None) -> str | None:
    """The ETag when it is an MD5 of the content."""
    return etag if etag and _PLAIN_MD5.match(etag) else None


def multipart_parts(etag: str | None) -> int | None:
    """The part count of a multipart upload's ETag (``<md5 of the parts' MD5s>-N``)."""
    found = _MULTIPART.match(etag or "")
    return int(found.group(1)) if found else None


def multipart_etag(part_digests: list[bytes]) -> str:
    """The ETag S3 gives an upload of parts with these MD5s."""
    return f"{hashlib.md5(b''.join(part_digests), usedforsecurity=False).hexdigest()}-{len(part_digests)}"


def layout_fits(size: int, parts: int, part_size: int | None) -> bool:
    """Whether an object of ``size`` bytes is ``parts`` parts of ``part_size`` (the last one
    shorter): the one layout a part size and count describe, and the only one kept."""
    return bool(part_size) and -(-size // part_size) == parts


def kept_part_size(source, destination, key: str, size: int, etag: str | None) -> int | None:
    """The part size in which to copy an object so that its copy has its ETag, or None: for an
    object uploaded in parts (on a store that says their size) copied to a bucket (where an
    object is written in parts), when its parts are ones any S3 store takes."""
    parts = multipart_parts(etag)
    if not parts or not hasattr(source, "part_size") or not hasattr(destination, "part_size"):
        return None
    part_size = source.part_size(key)
    if not layout_fits(size, parts, part_size) or part_size > MAX_PART or (parts > 1 and part_size < MIN_PART):
        return None
    return part_size


def content_md5(store, key: str, etag: str | None) -> str | None:
    """The MD5 of an object when it is known or cheap to get (local files)."""
    return plain_md5(etag) or (store.checksum(key) if hasattr(store, "checksum") else None)


def already_present(source, destination, obj: dict) -> bool:
    """Sync mode: the destination holds an object of the same size and checksum."""
    found = destination.head(obj["dest_key"])
    if found is None or found.size != obj["size"]:
        return False
    source_etag, dest_etag = obj.get("etag"), found.etag if found.etag_is_md5 else None
    if multipart_parts(source_etag) and hasattr(destination, "multipart_etag"):
        return _same_parts(source, obj["key"], source_etag, destination, obj["dest_key"], obj["size"])
    if multipart_parts(dest_etag) and hasattr(source, "multipart_etag"):
        return _same_parts(destination, obj["dest_key"], dest_etag, source, obj["key"], obj["size"])
    source_sum = content_md5(source, obj["key"], source_etag)
    dest_sum = content_md5(destination, obj["dest_key"], dest_etag)
    if source_sum and dest_sum:
        return source_sum == dest_sum
    # two multipart ETags: equal for the same bytes in the same parts (see ``multipart_etag``)
    return bool(source_etag) and source_etag == dest_etag


def _same_parts(store, key: str, etag: str, local, local_key: str, size: int) -> bool:
    """Whether the local file holds what the S3 object of this multipart ETag does: hashed in
    the object's parts (its part size from the store) to the ETag they would make."""
    part_size = store.part_size(key)
    if not layout_fits(size, multipart_parts(etag), part_size):
        return False
    return local.multipart_etag(local_key, part_size) == etag
