"""AWS calls of the ``ec2`` fleet: clients per region, and refusals in words an
operator can act on.

``call`` makes one EC2 or SSM call; what AWS refuses (no capacity, a quota, a
missing permission, a missing subnet…) comes back as a ``FleetError`` whose
message says what to do (``explain``), with AWS's own code kept beside it.
"""
from __future__ import annotations

import base64
import threading

import boto3
import botocore.exceptions
from botocore.config import Config

from pipeline import errors


class FleetError(errors.RetryableError):
    """Workers could not be launched or ended now; the message says what to fix."""

    code = "fleet_error"

    def __init__(self, message: str, *, aws_code: str = ""):
        super().__init__(message)
        self.aws_code = aws_code   # what AWS said (InsufficientInstanceCapacity, …), if it answered


class AwsClients:
    """boto3 clients per (service, region), made once; ``endpoint_url`` only for tests."""

    def __init__(self, endpoint_url: str | None = None):
        self.endpoint_url = endpoint_url
        self._clients: dict = {}
        self._lock = threading.Lock()

    def __call__(self, service: str, region: str):
        with self._lock:
            client = self._clients.get((service, region))
            if client is None:   # a session per client: boto3's default session is not thread-safe
                client = self._clients[(service, region)] = boto3.session.Session().client(
                    service, region_name=region, endpoint_url=self.endpoint_url,
                    config=Config(retries={"mode": "standard", "max_attempts": 5}))
            return client


def call(clients: AwsClients, region: str, operation: str, *, service: str = "ec2", profile: str = "", **arguments):
    """One AWS call; its refusal as a FleetError saying what to do. ``profile``: the workers'
    instance profile, named in the advice."""
    try:
        return getattr(clients(service, region), operation)(**arguments)
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        raise FleetError(explain(code, error.get("Message", str(exc)), region=region, operation=operation,
                                 profile=profile), aws_code=code) from None
    except botocore.exceptions.BotoCoreError as exc:
        raise FleetError(f"{service} {operation} in {region} failed: {exc}") from None


def explain(code: str, message: str, *, region: str, operation: str, profile: str) -> str:
    """An AWS refusal, in words an operator can act on."""
    if code == "InsufficientInstanceCapacity":
        return (f"AWS has no spare capacity for this instance type in the subnet's availability zone in {region} "
                f"right now; CloudMover keeps trying (a subnet in another zone may help) ({message})")
    if code in ("InstanceLimitExceeded", "VcpuLimitExceeded", "MaxSpotInstanceCountExceeded"):
        return (f"the EC2 quota in {region} is too low for these workers: ask AWS for a higher "
                f"'Running On-Demand Standard instances' vCPU quota (Service Quotas) ({message})")
    if code in ("UnauthorizedOperation", "AccessDenied", "AccessDeniedException", "AuthFailure"):
        return (f"the head node's IAM role may not call {operation} in {region} (it must be allowed to run, "
                f"tag and terminate worker instances, pass the worker role of {profile!r} and write its "
                f"/cloudmover/ SSM parameters) ({message})")
    if code.startswith("InvalidSubnetID") or code.startswith("InvalidVpcID"):
        return f"the subnet or VPC in the Worker EC2 settings for {region} does not exist there ({message})"
    if code == "NoSuchEntity" or (code == "InvalidParameterValue" and "iamInstanceProfile" in message):
        return (f"the worker instance profile {profile!r} (EC2_WORKER_PROFILE) does not exist or is not ready "
                f"yet ({message})")
    if code.startswith("InvalidAMIID") or code == "ParameterNotFound":
        return f"the worker AMI (EC2_WORKER_AMI) cannot be found in {region} ({message})"
    return f"{operation} in {region} failed: {code or 'error'}: {message}"


def user_data_of(client, instance_id: str) -> str:
    """The user data an instance was launched with, decoded (for operators and tests)."""
    answer = client.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    return base64.b64decode(answer["UserData"]["Value"]).decode()
