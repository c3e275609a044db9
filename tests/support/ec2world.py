"""An AWS account on the moto server for the ``ec2`` fleet: networks, the worker
instance profile, the worker AMI parameter, and reading back what was launched."""
from __future__ import annotations

import itertools
import uuid

import boto3

AMI_PARAMETER = "/cloudmover-test/worker-ami"
_networks = itertools.count(1)


class Ec2World:
    def __init__(self, moto):
        self.moto = moto
        self.profile = f"cm-worker-{uuid.uuid4().hex[:8]}"
        iam = self.client("iam", "us-east-1")
        iam.create_role(RoleName=self.profile, AssumeRolePolicyDocument=(
            '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},'
            '"Action":"sts:AssumeRole"}]}'))
        iam.create_instance_profile(InstanceProfileName=self.profile)
        iam.add_role_to_instance_profile(InstanceProfileName=self.profile, RoleName=self.profile)
        self._amis: dict[str, str] = {}

    def client(self, service: str, region: str):
        return boto3.client(service, endpoint_url=self.moto.endpoint_url, region_name=region,
                            aws_access_key_id=self.moto.access_key, aws_secret_access_key=self.moto.secret_key)

    def network(self, region: str) -> tuple[str, str]:
        """A fresh VPC and subnet in ``region``; the region's worker AMI parameter is set too."""
        ec2 = self.client("ec2", region)
        n = next(_networks) % 250
        vpc = ec2.create_vpc(CidrBlock=f"10.{n}.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.{n}.1.0/24")["Subnet"]["SubnetId"]
        self.ami(region)
        return vpc, subnet

    def ami(self, region: str) -> str:
        """The AMI the region's ``AMI_PARAMETER`` names (a Linux image moto knows)."""
        if region not in self._amis:
            ec2 = self.client("ec2", region)
            image = next(i for i in ec2.describe_images(Owners=["amazon"])["Images"]
                         if i.get("PlatformDetails", "Linux/UNIX") == "Linux/UNIX")
            self.client("ssm", region).put_parameter(Name=AMI_PARAMETER, Value=image["ImageId"], Type="String",
                                                     Overwrite=True)
            self._amis[region] = image["ImageId"]
        return self._amis[region]

    def instances(self, region: str, *, node_id: str | None = None, states=("pending", "running")) -> list[dict]:
        """Instances in ``region`` (of head node ``node_id``) in ``states``."""
        filters = [{"Name": "instance-state-name", "Values": list(states)}]
        if node_id:
            filters.append({"Name": "tag:cloudmover:head-node", "Values": [node_id]})
        pages = self.client("ec2", region).get_paginator("describe_instances").paginate(Filters=filters)
        return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]

    def settings(self, endpoint_url: str | None = None, **overrides) -> dict:
        """Head node settings for FLEET=ec2 on this account; ``endpoint_url``: the AWS endpoint
        the head node calls (default: moto itself; support.awsstub in front of it for pre-flight)."""
        return {"FLEET": "ec2", "EC2_ENDPOINT_URL": endpoint_url or self.moto.endpoint_url,
                "EC2_WORKER_PROFILE": self.profile,
                "EC2_WORKER_AMI": f"resolve:ssm:{AMI_PARAMETER}", "HEAD_NODE_PRIVATE_IP": "127.0.0.1",
                "HEAD_NODE_PUBLIC_IP": "127.0.0.1", "SOFTWARE_VERSION": "0.1.0", **overrides}


def tags(instance: dict) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in instance.get("Tags", ())}
