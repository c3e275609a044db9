"""Parsing the locations a user writes: ``s3://bucket/prefix``, local paths.

``folder:NAME/path`` names a folder the head node knows; it is resolved there
and passed in as ``folders``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.credentials import Credentials
from pipeline.errors import BadLocation
from pipeline.localstore import not_copied
from pipeline.planner import Location
from pipeline.store import StoreSpec


def parse_location(text: str, *, endpoint_url: str | None = None, region: str | None = None,
                   credentials: Credentials | None = None, folders: dict | None = None) -> Location:
    if not text or not text.strip():
        raise BadLocation("a location is empty")
    if (shown := not_utf8(text)) is not None:
        raise BadLocation(f"{shown!r} is not valid UTF-8, which no S3 key can be: rename it")
    if endpoint_url and (problem := endpoint_problem(endpoint_url)):
        raise BadLocation(problem)
    if text.startswith("s3://"):
        bucket, _, prefix = text[5:].partition("/")
        if not bucket:
            raise BadLocation(f"{text!r} names no bucket (write s3://bucket/prefix)")
        return Location(StoreSpec("s3", bucket, region, endpoint_url, credentials), prefix)
    if text.startswith("folder:"):
        name, _, prefix = text[7:].partition("/")
        folder = (folders or {}).get(name)
        if folder is None:
            known = ", ".join(sorted(folders or {})) or "none"
            raise BadLocation(f"no folder named {name!r} (folders: {known})")
        if folder.get("endpoint_url") and (problem := endpoint_problem(folder["endpoint_url"])):
            raise BadLocation(f"folder {name!r}: {problem}")
        creds = (Credentials(folder["access_key_id"], folder["secret_access_key"], folder.get("session_token"))
                 if folder.get("access_key_id") else None)
        return Location(StoreSpec("s3", folder["bucket"], folder.get("region") or region,
                                  folder.get("endpoint_url") or endpoint_url, creds),
                        _join(folder.get("prefix", ""), prefix))
    if "://" in text:
        raise BadLocation(f"{text!r}: unsupported scheme (use s3://, folder: or a local path)")
    path = Path(os.path.expanduser(text)).absolute()
    if path.is_file():
        return Location(StoreSpec("local", str(path.parent)), path.name)
    if os.path.lexists(path) and not path.is_dir() and (problem := not_copied(str(path))):
        raise BadLocation(f"{path}: {problem}")
    return Location(StoreSpec("local", str(path)), "")


def _join(base: str, rest: str) -> str:
    if base and not base.endswith("/"):
        base += "/"
    return base + rest


def endpoint_problem(url: str) -> str | None:
    """Why ``url`` cannot be an S3 endpoint (None when it can): http(s), a host, an optional
    port, nothing after them (requests go to the host's root, so a path would be lost)."""
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        parts, port_ok = None, False
    shown = re.sub(r"//[^/]*@", "//…@", url)     # never a password it may carry
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        return f"{shown!r} is not an http(s) endpoint URL (write http://HOST:PORT or https://HOST)"
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        return f"{shown!r}: an S3 endpoint URL is a scheme, a host and a port, with no path, query or user"
    return None


def not_utf8(text: str) -> str | None:
    """None when ``text`` is UTF-8; else how it reads, U+FFFD for each byte that is not (a path
    or file name whose bytes are not UTF-8 comes from the OS with them as lone surrogates,
    which no S3 key, database or JSON encoder takes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return None
