"""The object-store interface every endpoint implements, and the factory.

A store is a bucket of an S3 endpoint or a local directory. Keys are always
``/``-separated. Listing is a generator over pages, in key order, so a caller
can stream millions of keys and resume after the last key it handled.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator, Protocol

from pipeline.credentials import Credentials


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str | None = None
    # why a listed entry cannot be copied (a local named pipe, a link to nothing): the job
    # reports it as a failed object, so nothing the listing saw is left out without a word
    problem: str | None = None
    # False where the store says the ETag is no MD5 of the content however it looks (encrypted
    # with SSE-KMS or a customer key: see ``pipeline.checksums.etag_is_md5``); a listing cannot say
    etag_is_md5: bool = True


@dataclass
class ObjectAttributes:
    """What follows an object to its copy: metadata, content headers, tags."""
    content_type: str | None = None
    metadata: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)   # CacheControl, ContentDisposition, …
    tags: dict = field(default_factory=dict)
    storage_class: str | None = None


@dataclass
class Download:
    """An open read of (a range of) an object, with what follows it to the copy."""
    body: BinaryIO
    size: int                      # bytes in this read
    etag: str | None
    attributes: ObjectAttributes
    tag_count: int = 0
    etag_is_md5: bool = True       # as ObjectInfo's


@dataclass(frozen=True)
class StoreSpec:
    """Enough to open a store: what task messages carry (credentials unsealed)."""
    kind: str                     # "s3" | "local"
    bucket: str                   # bucket name, or root directory for local
    region: str | None = None
    endpoint_url: str | None = None
    credentials: Credentials | None = None

    def same_endpoint(self, other: "StoreSpec") -> bool:
        """True when a server-side copy between the two can work."""
        return (self.kind == other.kind == "s3" and self.endpoint_url == other.endpoint_url
                and self.credentials == other.credentials)

    def url(self, key: str = "") -> str:
        if self.kind == "local":
            return f"{self.bucket.rstrip('/')}/{key}"
        return f"s3://{self.bucket}/{key}"


class Store(Protocol):
    spec: StoreSpec

    def check(self, write: bool = False) -> None:
        """Raise a StoreError saying why the store cannot be used."""

    def list(self, prefix: str, *, recursive: bool = True, start_after: str | None = None,
             page_size: int = 1000, first_page_size: int | None = None) -> Iterator[list[ObjectInfo]]:
        """Pages of (up to ``page_size``) objects under ``prefix`` in key order, after ``start_after``;
        the first of up to ``first_page_size`` when given (a listing's first objects, out sooner)."""

    def head(self, key: str) -> ObjectInfo | None: ...

    def problem(self, key: str) -> str | None:
        """Why the entry at ``key``, which ``head`` does not give, is no object to copy (a local
        named pipe …), as its listing's ``ObjectInfo.problem`` says; None otherwise."""

    def attributes(self, key: str) -> ObjectAttributes: ...

    def get(self, key: str, *, etag: str | None, offset: int = 0, length: int | None = None) -> Download:
        """Read the object (a range when ``length``); fail if it no longer matches ``etag``."""


def open_store(spec: StoreSpec, *, pool_size: int = 32):
    """The store ``spec`` names; clients are created here, never at import."""
    if spec.kind == "local":   # imported here: a local-only job never loads boto3
        from pipeline.localstore import LocalStore
        return LocalStore(spec)
    if spec.kind == "s3":
        from pipeline.s3store import S3Store
        return S3Store(spec, pool_size=pool_size)
    raise ValueError(f"unknown store kind {spec.kind!r}")


def spec_from_ref(ref: dict, sealer) -> StoreSpec:
    """The StoreSpec a message's StoreRef names, credentials opened with ``sealer``."""
    return StoreSpec(kind=ref["kind"], bucket=ref["bucket"], region=ref.get("region"),
                     endpoint_url=ref.get("endpoint_url"), credentials=sealer.unseal(ref.get("credentials")))


def ref_from_spec(spec: StoreSpec, sealer) -> dict:
    """The StoreRef for messages: credentials sealed."""
    return {"kind": spec.kind, "bucket": spec.bucket, "region": spec.region,
            "endpoint_url": spec.endpoint_url, "credentials": sealer.seal(spec.credentials)}


class StoreCache:
    """One store per spec: clients are thread-safe and costly to create."""

    def __init__(self, sealer, *, pool_size: int = 32):
        self._sealer, self._pool_size = sealer, pool_size
        self._stores: dict = {}
        self._lock = threading.Lock()

    def open(self, ref: dict):
        """The store a message's StoreRef names."""
        return self.open_spec(spec_from_ref(ref, self._sealer))

    def close(self) -> None:
        with self._lock:
            stores, self._stores = list(self._stores.values()), {}
        for store in stores:
            store.close()

    def open_spec(self, spec: StoreSpec):
        with self._lock:
            store = self._stores.get(spec)
            if store is None:
                store = self._stores[spec] = open_store(spec, pool_size=self._pool_size)
        return store
