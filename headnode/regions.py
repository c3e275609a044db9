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


def job_region(source: StoreSpec, destination: StoreSpec, *, codec: str, default: str) -> str:
    """The region whose task queue a job between these stores uses."""
    working = source if codec == "compress" else destination
    return (working.region or default) if working.kind == "s3" else "local"


def region_of(source: str, destination: str, *, codec: str, config: dict) -> str:
    """``job_region`` for two locations as a user writes them."""
    parse = lambda where: parse_location(where, folders=config["FOLDERS"]).spec
    return job_region(parse(source), parse(destination), codec=codec, default=config["REGION"])
