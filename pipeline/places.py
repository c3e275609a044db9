"""Whether two locations are the same place, however they are spelled.

A move whose destination is its source would copy each object onto itself,
find the copy verified, then delete it: the only copy. So a job is refused
when its destination is, or lies inside, its source, and a worker keeps a
source that a delete task names as its own copy. Local paths are compared as
the files they name (links and ``..`` resolved). S3 locations are the same
store when they name the same bucket on the same server: on AWS (no endpoint,
or an ``amazonaws.com`` one) bucket names are global, whatever the region;
elsewhere two endpoint URLs are one server when their ports match and their
hosts resolve to a common address (``localhost`` and ``127.0.0.1``, two DNS
names of one host).
"""
from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlsplit

from pipeline.errors import BadLocation
from pipeline.planner import Location
from pipeline.store import StoreSpec

AWS_DOMAINS = ("amazonaws.com", "amazonaws.com.cn")
AWS = (frozenset({"aws"}), 0)


def check_not_inside(source: Location, destination: Location, *, recursive: bool) -> None:
    """Refuse a destination that lies inside the source: the copy would copy itself."""
    if not same_store(source.spec, destination.spec):
        return
    source_path, destination_path = _path(source), _path(destination)
    if destination_path == source_path:
        raise BadLocation(f"the destination {destination.url()} is the source itself")
    one_file = source.spec.kind == "local" and source.prefix != ""    # nothing lies inside a file
    if recursive and destination_path.startswith(source_path) and not one_file:
        raise BadLocation(f"the destination {destination.url()} lies inside the source "
                          f"{source.url()}: the job would copy its own copies")


def same_place(a: Location, b: Location) -> bool:
    """Whether ``a`` and ``b`` name the same object or prefix."""
    return same_store(a.spec, b.spec) and _path(a) == _path(b)


def same_store(a: StoreSpec, b: StoreSpec) -> bool:
    if a.kind != b.kind:
        return False
    if a.kind == "local":
        return True    # one file system: the paths tell
    if a.bucket != b.bucket:
        return False
    (names_a, port_a), (names_b, port_b) = _server(a.endpoint_url), _server(b.endpoint_url)
    return port_a == port_b and bool(names_a & names_b)


def _path(location: Location) -> str:
    """The location's path in its store; a local one's real path from the root (a directory
    under the source's, or reached through a link to it, is inside it)."""
    if location.spec.kind != "local":
        return location.prefix
    path = os.path.realpath(os.path.join(location.spec.bucket, location.prefix))
    directory = not location.prefix or location.prefix.endswith("/")
    return path.rstrip("/") + "/" if directory else path


def _server(endpoint_url: str | None) -> tuple[frozenset[str], int]:
    """(the names and addresses the endpoint's host goes to, its port); AWS, any region, is
    one server of its own (port 0: no endpoint URL has it)."""
    if not endpoint_url:
        return AWS
    parts = urlsplit(endpoint_url)
    host = (parts.hostname or "").lower().rstrip(".")
    if any(host == domain or host.endswith("." + domain) for domain in AWS_DOMAINS):
        return AWS
    return _addresses(host), parts.port or (443 if parts.scheme == "https" else 80)


@functools.lru_cache(maxsize=256)
def _addresses(host: str) -> frozenset[str]:
    """The host's name and every address it resolves to (just its name when it does not)."""
    try:
        found = {info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except (OSError, UnicodeError):
        found = set()
    return frozenset(found | {host})
