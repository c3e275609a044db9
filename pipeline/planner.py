"""Planning: how a page of listed objects becomes tasks.

Small objects are batched into ``CopyObjects`` tasks (bounded by count and
bytes). An object above the multipart threshold, and anything above 5 GiB,
becomes one ``CopyPart`` task per part; its ``CompleteMultipart`` task is
emitted later, by the head node, once every part has reported. Part sizes grow
when an object would need more than 10,000 parts. In an image codec job,
objects up to ``whole_object_limit`` are copied whole whatever their size, so
the worker's codec stage sees all of their bytes.

This module is pure: the caller supplies the listing and a function that
starts a multipart upload, and persists and publishes what comes out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

from pipeline.store import ObjectInfo, StoreSpec

MiB = 1 << 20
GiB = 1 << 30
MAX_SINGLE_COPY = 5 * GiB
MAX_PARTS = 10_000
MIN_PART = 5 * MiB
MAX_PART = 5 * GiB          # S3's bounds on a part (but the last, which may be less)
# the keys of one batch, in UTF-8: JSON escapes can triple them, and the task and the event that
# reports it (with both keys of every object) must stay well inside SNS's 256 KiB message limit
MAX_BATCH_KEY_BYTES = 48 << 10


@dataclass(frozen=True)
class PlanSettings:
    multipart_threshold: int = 64 * MiB
    part_size: int = 64 * MiB
    batch_objects: int = 100
    batch_bytes: int = 256 * MiB
    whole_object_limit: int = 0    # codec jobs: objects up to this size are never split into parts

    def __post_init__(self):
        if self.part_size < MIN_PART and self.multipart_threshold >= MIN_PART:
            raise ValueError(f"part_size must be at least {MIN_PART} bytes")
        if not 0 <= self.whole_object_limit <= MAX_SINGLE_COPY:
            raise ValueError(f"whole_object_limit must be between 0 and {MAX_SINGLE_COPY} bytes")
        if self.batch_objects < 1 or self.batch_bytes < 1:
            raise ValueError("batch limits must be positive")


@dataclass(frozen=True)
class Location:
    """A store and a key prefix (or the key of one object) inside it."""
    spec: StoreSpec
    prefix: str

    def url(self) -> str:
        return self.spec.url(self.prefix)


def is_multipart(size: int, settings: PlanSettings) -> bool:
    if size <= settings.whole_object_limit:
        return False
    return size > MAX_SINGLE_COPY or size > settings.multipart_threshold


def part_ranges(size: int, settings: PlanSettings) -> list[tuple[int, int]]:
    """(offset, length) of each part of an object of ``size`` bytes."""
    part = max(settings.part_size, math.ceil(size / MAX_PARTS))
    return [(offset, min(part, size - offset)) for offset in range(0, size, part)]


def object_ref(obj: ObjectInfo, dest_key: str) -> dict:
    """An object as a copy task names it."""
    return {"key": obj.key, "dest_key": dest_key, "size": obj.size, "etag": obj.etag}


def map_key(key: str, source_prefix: str, dest_prefix: str) -> str:
    """The destination key of ``key``: the source prefix swapped for the destination's."""
    if not key.startswith(source_prefix):
        raise ValueError(f"{key!r} is not under {source_prefix!r}")
    return dest_prefix + key[len(source_prefix):]


@dataclass
class PlannedPage:
    copy_batches: list[list[dict]]             # object refs, one list per CopyObjects task
    multipart: list[tuple[ObjectInfo, str]]    # (object, destination key) to split into parts


def plan_page(page: Iterable[ObjectInfo], *, source_prefix: str, dest_prefix: str,
              settings: PlanSettings) -> PlannedPage:
    planned = PlannedPage([], [])
    batch: list[dict] = []
    batch_bytes = key_bytes = 0
    for obj in page:
        dest_key = map_key(obj.key, source_prefix, dest_prefix)
        if is_multipart(obj.size, settings):
            planned.multipart.append((obj, dest_key))
            continue
        keys = len(obj.key.encode()) + len(dest_key.encode())
        if batch and (len(batch) >= settings.batch_objects or batch_bytes + obj.size > settings.batch_bytes
                      or key_bytes + keys > MAX_BATCH_KEY_BYTES):
            planned.copy_batches.append(batch)
            batch, batch_bytes, key_bytes = [], 0, 0
        batch.append(object_ref(obj, dest_key))
        batch_bytes += obj.size
        key_bytes += keys
    if batch:
        planned.copy_batches.append(batch)
    return planned


def part_tasks(obj: ObjectInfo, dest_key: str, upload_id: str, settings: PlanSettings,
               new_task: Callable[..., dict]) -> list[dict]:
    """The ``CopyPart`` tasks of one multipart object; ``new_task`` fills ids and stores."""
    return [new_task("CopyPart", key=obj.key, dest_key=dest_key, upload_id=upload_id, part_number=number,
                     offset=offset, length=length, object_size=obj.size, etag=obj.etag)
            for number, (offset, length) in enumerate(part_ranges(obj.size, settings), start=1)]
