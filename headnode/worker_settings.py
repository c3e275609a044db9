"""Per-region worker settings: the VPC and subnet workers run in, and whether they
reach the head node by its private or public IP. Checked for form here; whether
they exist in AWS is the pre-flight's business."""
from __future__ import annotations

import re

from headnode import audit
from headnode.accesserrors import Refused
from headnode.folders import s3_regions
from headnode.models import WORKER_PATHS, RegionSettings, now

VPC_ID = re.compile(r"^vpc-[0-9a-f]{8}([0-9a-f]{9})?$")
SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8}([0-9a-f]{9})?$")


def all_settings() -> list[RegionSettings]:
    return list(RegionSettings.select().order_by(RegionSettings.region))


def save(actor, region: str, *, vpc_id: str, subnet_id: str, head_node_path: str) -> RegionSettings:
    vpc_id, subnet_id = (vpc_id or "").strip(), (subnet_id or "").strip()
    if region not in s3_regions():
        raise Refused(f"{region!r} is not an AWS region.")
    if not VPC_ID.match(vpc_id):
        raise Refused(f"{vpc_id!r} is not a VPC id (vpc- and 8 or 17 hex digits).")
    if not SUBNET_ID.match(subnet_id):
        raise Refused(f"{subnet_id!r} is not a subnet id (subnet- and 8 or 17 hex digits).")
    if head_node_path not in WORKER_PATHS:
        raise Refused("Workers reach the head node by its private or its public IP: choose one.")
    fields = {"vpc_id": vpc_id, "subnet_id": subnet_id, "head_node_path": head_node_path, "updated_at": now()}
    if RegionSettings.update(**fields).where(RegionSettings.region == region).execute() == 0:
        RegionSettings.create(region=region, **fields)
    audit.record(actor.username, "worker_settings_changed", region,
                 f"VPC {vpc_id}, subnet {subnet_id}, {head_node_path} IP")
    return RegionSettings.get_by_id(region)


def remove(actor, region: str) -> None:
    if RegionSettings.delete().where(RegionSettings.region == region).execute():
        audit.record(actor.username, "worker_settings_removed", region)
