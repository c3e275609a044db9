"""Which region's task queue a job's tasks go to.

The destination's, except for an image compress job, whose workers run in the
source region so that the transfer carries the smaller, encoded bytes (a
decompress job's workers run in the destination region, where the restored
bytes are written). Local directories are region ``local``. Kept apart from
the job service so that ``cloudmover cp`` can start a region's workers before
it loads the rest of the head node.
"""
from __future__ import annotations

from pipeline.locations import parse_location
from pipeline.store import StoreSpec


def queue_region(spec: StoreSpec, default: str) -> str:
    """The region of the workers that write to (or, compressing, read from) ``spec``."""
    return (spec.region or default) if spec.kind == "s3" else "local"


def region_of(source: str, destination: str, *, codec: str, config: dict) -> str:
    """The region whose task queue a job from ``source`` to ``destination`` uses."""
    where = parse_location(source if codec == "compress" else destination, folders=config["FOLDERS"])
    return queue_region(where.spec, config["REGION"])
