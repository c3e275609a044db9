"""Comparing objects by content checksum across stores.

An S3 ETag is an MD5 of the content only for single-part, unencrypted
uploads; anything else (``…-N`` multipart ETags, local files) is compared by
other means or not at all, never guessed.
"""
from __future__ import annotations

import re

_PLAIN_MD5 = re.compile(r"^[0-9a-f]{32}$")


def etag_is_md5(headers) -> bool:
    """Whether an S3 answer's ETag can be an MD5 of the content, by its encryption headers
    (lower-cased names): AWS gives objects encrypted with SSE-KMS or DSSE-KMS, or with a
    customer's key (SSE-C), ETags that are no MD5 of their content, though they look like one."""
    return not ((headers.get("x-amz-server-side-encryption") or "").startswith("aws:kms")
                or headers.get("x-amz-server-side-encryption-customer-algorithm"))


def plain_md5(etag: str | None) -> str | None:
    """The ETag when it is an MD5 of the content."""
    return etag if etag and _PLAIN_MD5.match(etag) else None


def content_md5(store, key: str, etag: str | None) -> str | None:
    """The MD5 of an object when it is known or cheap to get (local files)."""
    return plain_md5(etag) or (store.checksum(key) if hasattr(store, "checksum") else None)


def already_present(source, destination, obj: dict) -> bool:
    """Sync mode: the destination holds an object of the same size and checksum."""
    found = destination.head(obj["dest_key"])
    if found is None or found.size != obj["size"]:
        return False
    source_sum = content_md5(source, obj["key"], obj.get("etag"))
    dest_sum = content_md5(destination, obj["dest_key"], found.etag if found.etag_is_md5 else None)
    if source_sum and dest_sum:
        return source_sum == dest_sum
    return bool(obj.get("etag")) and obj.get("etag") == found.etag
