"""What the worker fleet is asked for, and how much of it each job gets.

The head node hands its fleet provider, per region, one ``JobDemand`` record
per unfinished job (its tier, image codec mode and the largest object its
planner has seen so far); the provider sizes its workers from these. The
sizing rules of the product's delivery tiers live here once, for the ``ec2``
provider and for anyone estimating a job's instances:

  copy/move:            Express 4, Plus 12, Ultra 40 workers
  image encode/decode:  Express 5, Plus 15, Ultra 45 workers

and ``instance_type`` is the one rule choosing the EC2 instance type.
"""
from __future__ import annotations

from dataclasses import dataclass

MiB = 1 << 20
GiB = 1 << 30

TIER_WORKERS = {"copy": {"express": 4, "plus": 12, "ultra": 40},
                "codec": {"express": 5, "plus": 15, "ultra": 45}}

# Instance types by the largest object a job holds (its planner's figure so far).
# Copies: m5.xlarge (16 GiB); a file over 250 MiB gets m5.2xlarge (32 GiB: more parts
# in flight per object), one over 5 GiB, S3's single-copy limit, m5.4xlarge (64 GiB).
# The image codec: c5.9xlarge (72 GiB); an "ultra-large" file, over 512 MiB, gets
# c5.18xlarge (144 GiB), since the codec holds about 8x an image while it works on it
# (worker/codec_stage.py) and a worker codes several images at once.
COPY_LARGE_OBJECT = 250 * MiB
COPY_HUGE_OBJECT = 5 * GiB
CODEC_ULTRA_LARGE_OBJECT = 512 * MiB


@dataclass(frozen=True)
class JobDemand:
    """One unfinished job, as a fleet provider sees it."""
    job_id: int | None          # None: a job about to be created (``cloudmover cp`` starts workers early)
    tier: str                   # express | plus | ultra
    codec: str = "none"         # none | compress | decompress
    largest_object: int = 0     # bytes: the largest object planned so far
    planned: bool = True        # its first listing page is planned: ``largest_object`` means something

    @property
    def uses_codec(self) -> bool:
        return self.codec in ("compress", "decompress")


def workers_for(demand: JobDemand) -> int:
    """How many worker instances the job's delivery tier asks for."""
    return TIER_WORKERS["codec" if demand.uses_codec else "copy"][demand.tier]


def instance_type(demand: JobDemand) -> str:
    """The EC2 instance type of the job's workers (the one place this is decided)."""
    if demand.uses_codec:
        return "c5.18xlarge" if demand.largest_object > CODEC_ULTRA_LARGE_OBJECT else "c5.9xlarge"
    if demand.largest_object > COPY_HUGE_OBJECT:
        return "m5.4xlarge"
    if demand.largest_object > COPY_LARGE_OBJECT:
        return "m5.2xlarge"
    return "m5.xlarge"
