"""The user data of an EC2 worker: ``cloudformation/worker-userdata.sh``, rendered.

The template's ``# @@SETTINGS@@`` line becomes the bootstrap's settings and its
``@@WORKER_ENV@@`` line the worker's environment (worker/main.py), each value
shell-quoted. The secret key is not among them: the bootstrap reads it from an
SSM SecureString parameter with the instance role (``secret_parameter``).
Also here: the address by which a region's workers reach the head node, and
``Bootstrap``, all of it for one head node's config.
"""
from __future__ import annotations

import shlex
import sys
from importlib import metadata
from pathlib import Path
from urllib.parse import urlparse, urlunparse

from pipeline.credentials import sealing_key
from headnode import instancemetadata
from headnode.fleet import worker_env

MAX_USER_DATA = 16 * 1024   # EC2's limit, before base64
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class UserDataError(ValueError):
    """The user data cannot be rendered (a setting that cannot travel in it)."""


def template_path() -> Path:
    """The template: in the source tree, or where ``pip install`` put it (setup.cfg data_files)."""
    for candidate in (Path(__file__).resolve().parents[1] / "cloudformation" / "worker-userdata.sh",
                      Path(sys.prefix) / "share" / "cloudmover" / "worker-userdata.sh"):
        if candidate.is_file():
            return candidate
    raise UserDataError("cloudformation/worker-userdata.sh is missing from this installation")


def render(*, region: str, software: str, head_node: str, secret_parameter: str, worker_env: dict) -> str:
    """The bootstrap script for a worker of ``region``; ``worker_env`` must hold no secret key."""
    settings = {"CM_REGION": region, "CM_SOFTWARE": software, "CM_HEAD_NODE": head_node,
                "CM_SECRET_PARAMETER": secret_parameter}
    text = template_path().read_text()
    for marker, values in (("# @@SETTINGS@@", settings), ("@@WORKER_ENV@@", worker_env)):
        if text.count(marker) != 1:
            raise UserDataError(f"the user data template must hold {marker!r} once")
        text = text.replace(marker, _assignments(values))
    if len(text.encode()) > MAX_USER_DATA:
        raise UserDataError(f"the worker user data is {len(text.encode())} bytes; EC2 takes at most {MAX_USER_DATA}")
    return text


def _assignments(values: dict) -> str:
    lines = []
    for name, value in values.items():
        value = str(value)
        if "\n" in value or "\r" in value:
            raise UserDataError(f"{name} holds a line break and cannot go into the worker's user data")
        lines.append(f"{name}={shlex.quote(value)}")
    return "\n".join(lines)


def software(config: dict) -> str:
    """What workers install: SOFTWARE_VERSION, or this head node's own version."""
    if config["SOFTWARE_VERSION"]:
        return config["SOFTWARE_VERSION"]
    try:
        return metadata.version("cloudmover")
    except metadata.PackageNotFoundError:
        raise UserDataError("set SOFTWARE_VERSION: what workers install (this head node runs from a source "
                            "tree without an installed version)") from None


def worker_bus_url(url: str, head_node: str) -> str:
    """The bus URL as a worker uses it: a broker the head node reaches on its loopback
    address is reached by workers at the head node's address."""
    parsed = urlparse(url)
    if parsed.hostname not in LOOPBACK:
        return url
    userinfo, _, hostport = parsed.netloc.rpartition("@")
    port = f":{parsed.port}" if parsed.port else ""
    host = f"[{head_node}]" if ":" in head_node else head_node
    return urlunparse(parsed._replace(netloc=f"{userinfo + '@' if userinfo else ''}{host}{port}"))


def head_node_address(config: dict, path: str, *, timeout: float = 2.0) -> str:
    """The head node's IP on ``path`` (private | public): configured, or read from the
    instance metadata of the EC2 instance the head node runs on."""
    key = "HEAD_NODE_PUBLIC_IP" if path == "public" else "HEAD_NODE_PRIVATE_IP"
    if config[key]:
        return config[key]
    item = "public-ipv4" if path == "public" else "local-ipv4"
    base = config["INSTANCE_METADATA_URL"]
    try:
        return instancemetadata.read(base, item, timeout=timeout)
    except OSError as exc:
        raise UserDataError(f"the head node's {path} IP is unknown: set {key}, or run the head node on an "
                            f"EC2 instance{' with a public IP' if path == 'public' else ''} "
                            f"(instance metadata at {base}: {exc})") from None


class Bootstrap:
    """What a worker instance starts from: its user data, and the secret key it reads."""

    def __init__(self, config: dict):
        self.config = config

    def user_data(self, region: str, *, path: str, secret_parameter: str) -> str:
        head_node = head_node_address(self.config, path)
        env = {k: v for k, v in worker_env(self.config).items() if k != "CLOUDMOVER_SEALING_KEY"}
        env["CLOUDMOVER_BUS_URL"] = worker_bus_url(env["CLOUDMOVER_BUS_URL"], head_node)
        return render(region=region, software=software(self.config), head_node=head_node,
                      secret_parameter=secret_parameter, worker_env=env)

    @property
    def secret(self) -> str:
        """What the worker reads from SSM: the sealing key, never the head node's secret itself."""
        return sealing_key(self.config["SECRET_KEY"])
