"""Head node configuration: defaults, then ``CLOUDMOVER_*`` environment, then
the mapping passed to ``create_app`` / ``HeadNode`` (tests), validated once.

Every key, its type and default is in ``DEFAULTS``; an unknown key is refused,
so a misspelt setting fails at start instead of being silently ignored.
"""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

MiB = 1 << 20
GiB = 1 << 30

DEFAULTS: dict = {
    "DATA_DIR": "./cloudmover-data",         # database, queue file, certificate, secret key
    "DATABASE": None,                        # default: DATA_DIR/cloudmover.db
    "BUS_URL": None,                         # default: sqlite-queue:///DATA_DIR/queue.db
    "BUS_OPTIONS": {},                       # kombu transport options (JSON in the environment)
    "QUEUE_PREFIX": "cloudmover-",
    "VISIBILITY_TIMEOUT": 120,               # seconds a received task stays hidden
    "MAX_RECEIVES": 5,                       # deliveries before a task goes to the dead-letter queue
    "SECRET_KEY": None,                      # required; `cloudmover up` creates one in DATA_DIR
    "API_TOKEN": None,                       # bearer token for the REST API; created by `up`
    "HOST": "127.0.0.1",
    "PORT": 9090,
    "TLS": True,                             # HTTPS with a self-signed certificate in DATA_DIR
    "ENDPOINT_URL": None,                    # default S3 endpoint for s3:// locations
    "REGION": "us-east-1",                   # default region for s3:// locations
    "MULTIPART_THRESHOLD": 64 * MiB,
    "PART_SIZE": 64 * MiB,
    "BATCH_OBJECTS": 100,
    "LIST_PAGE_SIZE": 1000,                  # source objects planned (and persisted) per transaction
    "FLEET": "local",                        # local | none (workers started elsewhere)
    # one process already keeps OBJECT_THREADS copies (WORKER_THREADS parts) in flight; on 2 cores
    # shared with a local S3 server a second one cost more than it gave (bench/README.md)
    "LOCAL_WORKERS": {"express": 1, "plus": 4, "ultra": 8},
    "WORKER_THREADS": 4,
    "OBJECT_THREADS": 16,
    "FOLDERS": {},                           # name -> {bucket, region, endpoint_url, access_key_id, …}
    "CODEC_MAX_OBJECT": 1 * GiB,             # image codec: larger objects move unchanged (workers get it too)
    "TRANSFER_PRICE_PER_GB": 0.02,           # $ per GB (2**30 bytes) between regions: AWS inter-region
    "STORAGE_PRICE_PER_GB_MONTH": 0.023,     # $ per GB-month stored: S3 Standard
    "TESTING": False,
}


def load_config(overrides: dict | None = None, env=os.environ) -> dict:
    config = dict(DEFAULTS)
    for key, default in DEFAULTS.items():
        raw = env.get(f"CLOUDMOVER_{key}")
        if raw is not None:
            config[key] = _parse(key, raw, default)
    unknown = set(overrides or {}) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    config.update(overrides or {})
    return _complete(config)


def _parse(key: str, raw: str, default):
    if isinstance(default, bool):
        return raw.lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, dict):
        value = json.loads(raw)
        if not isinstance(value, dict):
            raise ValueError(f"CLOUDMOVER_{key} must be a JSON object")
        return value
    return raw


def _complete(config: dict) -> dict:
    data = Path(config["DATA_DIR"]).resolve()
    config["DATA_DIR"] = str(data)
    config["DATABASE"] = config["DATABASE"] or str(data / "cloudmover.db")
    config["BUS_URL"] = config["BUS_URL"] or f"sqlite-queue://{data / 'queue.db'}"
    if config["MULTIPART_THRESHOLD"] < 1 or config["PART_SIZE"] < 1:
        raise ValueError("MULTIPART_THRESHOLD and PART_SIZE must be positive")
    if config["LIST_PAGE_SIZE"] < 1:
        raise ValueError("LIST_PAGE_SIZE must be positive")
    if not 1 <= config["CODEC_MAX_OBJECT"] <= 5 * GiB:
        raise ValueError("CODEC_MAX_OBJECT must be between 1 byte and 5 GiB")
    for key in ("TRANSFER_PRICE_PER_GB", "STORAGE_PRICE_PER_GB_MONTH"):
        if float(config[key]) < 0:
            raise ValueError(f"{key} must not be negative")
    if config["FLEET"] not in ("local", "none"):
        raise ValueError("FLEET must be 'local' or 'none'")
    for tier in ("express", "plus", "ultra"):
        if int(config["LOCAL_WORKERS"].get(tier, 0)) < 1:
            raise ValueError(f"LOCAL_WORKERS needs a positive count for tier {tier!r}")
    return config


def ensure_data_dir(config: dict) -> None:
    """Create DATA_DIR (mode 0700: it holds the secret key and the queue) if missing."""
    os.makedirs(config["DATA_DIR"], mode=0o700, exist_ok=True)


def ensure_secret(config: dict, name: str, filename: str) -> str:
    """The secret ``name``: configured, or read from (created in) DATA_DIR/filename, mode 0600."""
    if config.get(name):
        return config[name]
    path = Path(config["DATA_DIR"]) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
    config[name] = path.read_text().strip()
    return config[name]
