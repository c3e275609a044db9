"""Reading the EC2 instance metadata service (IMDSv2: a session token first, then the item)."""
from __future__ import annotations

import urllib.request


def read(base_url: str, item: str, *, timeout: float = 1.0) -> str:
    """The metadata ``item`` (``instance-id``, ``local-ipv4``…) at ``base_url``; OSError off EC2."""
    token_request = urllib.request.Request(f"{base_url}/latest/api/token", method="PUT",
                                           headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    with urllib.request.urlopen(token_request, timeout=timeout) as answer:
        token = answer.read().decode()
    request = urllib.request.Request(f"{base_url}/latest/meta-data/{item}",
                                     headers={"X-aws-ec2-metadata-token": token})
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return answer.read().decode().strip()
