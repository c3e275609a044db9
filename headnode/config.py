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
    "MESSAGE_RETENTION": 14 * 24 * 3600,     # SQS: seconds a queue keeps an unreceived message (docs/aws-queues.md)
    "EVENTS_TOPIC": "auto",                  # sns | none | auto: SNS on an SQS bus in AWS (docs/aws-queues.md)
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
    # a job's tasks in its queue at once: completing an upload or deleting a moved source waits
    # behind at most these (headnode/jobs.py publish_pending)
    "PUBLISH_WINDOW": 1000,
    "LIST_PAGE_SIZE": 1000,                  # source objects planned (and persisted) per transaction
    "FLEET": "local",                        # local | ec2 (instances per region) | none (workers started elsewhere)
    # one process already keeps OBJECT_THREADS copies (WORKER_THREADS parts) in flight; on 2 cores
    # shared with a local S3 server a second one cost more than it gave (bench/README.md)
    "LOCAL_WORKERS": {"express": 1, "plus": 4, "ultra": 8},
    "LOCAL_IDLE_SECONDS": 15.0,              # local workers of a region stop after it has been idle this long
    "WORKER_THREADS": 4,
    # small objects want many copies in flight (each waits on a request); large ones want few, or
    # the store copies too many bytes at once: both bounds hold (bench/README.md, 27 Nov)
    "OBJECT_THREADS": 64,
    "COPY_BYTES_IN_FLIGHT": 512 * MiB,        # bytes of a worker process's server-side copies at once
    "FOLDERS": {},                           # name -> {bucket, region, endpoint_url, access_key_id, …}
    "CODEC_MAX_OBJECT": 1 * GiB,             # image codec: larger objects move unchanged (workers get it too)
    "TRANSFER_PRICE_PER_GB": 0.02,           # $ per GB (2**30 bytes) between regions: AWS inter-region
    "STORAGE_PRICE_PER_GB_MONTH": 0.023,     # $ per GB-month stored: S3 Standard
    "PRICE_TABLE": None,                     # JSON file merged over headnode/prices.json for cost estimates
    "INSTANCE_METADATA_URL": "http://169.254.169.254",   # EC2 IMDS: the initial admin password is the instance id
    "PUBLIC_URL": None,                      # how users reach the UI (links in email); default https://HOST:PORT
    # -- the ec2 fleet (FLEET=ec2; docs/ec2-fleet.md): workers are EC2 instances in each job's region,
    # in the VPC/subnet of its RegionSettings, draining an SQS bus (BUS_URL sqs://)
    "EC2_ENDPOINT_URL": None,                # tests only: an emulator for the fleet's EC2 and SSM calls
    "EC2_WORKER_AMI": "resolve:ssm:/aws/service/debian/release/12/latest/amd64",   # ami-… (every
                                             # region) or resolve:ssm:PARAMETER, read in each region
    "EC2_WORKER_PROFILE": None,              # instance profile (name or ARN) of the workers: required
    "EC2_SECURITY_GROUP": "default",         # name of the workers' security group in each region's VPC
    "EC2_IDLE_SECONDS": 300,                 # a region's workers end after its queue is idle this long
    "EC2_MAX_WORKERS_PER_REGION": 50,        # cap on the sum of concurrent jobs' tiers in one region
    "EC2_SWEEP_SECONDS": 300,                # how often leftover workers of this head node are looked for
    "HEAD_NODE_ID": None,                    # tags this install's workers; default: created in DATA_DIR
    "HEAD_NODE_PRIVATE_IP": None,            # how workers reach the head node (RegionSettings path);
    "HEAD_NODE_PUBLIC_IP": None,             #   default: read from the instance metadata
    "SOFTWARE_VERSION": None,                # what workers install: a version or a pip requirement;
                                             #   default: this head node's own version
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
    for key in ("LIST_PAGE_SIZE", "PUBLISH_WINDOW", "WORKER_THREADS", "OBJECT_THREADS", "COPY_BYTES_IN_FLIGHT"):
        if config[key] < 1:
            raise ValueError(f"{key} must be positive")
    if not 1 <= config["CODEC_MAX_OBJECT"] <= 5 * GiB:
        raise ValueError("CODEC_MAX_OBJECT must be between 1 byte and 5 GiB")
    for key in ("TRANSFER_PRICE_PER_GB", "STORAGE_PRICE_PER_GB_MONTH"):
        if float(config[key]) < 0:
            raise ValueError(f"{key} must not be negative")
    if config["PRICE_TABLE"] is not None:
        from headnode.pricing import check_override
        check_override(config["PRICE_TABLE"])
    _check_queue_settings(config)
    if config["FLEET"] not in ("local", "ec2", "none"):
        raise ValueError("FLEET must be 'local', 'ec2' or 'none'")
    if config["FLEET"] == "ec2":
        _check_ec2(config)
    if float(config["LOCAL_IDLE_SECONDS"]) < 0:
        raise ValueError("LOCAL_IDLE_SECONDS must not be negative")
    for tier in ("express", "plus", "ultra"):
        if int(config["LOCAL_WORKERS"].get(tier, 0)) < 1:
            raise ValueError(f"LOCAL_WORKERS needs a positive count for tier {tier!r}")
    return config


def _check_queue_settings(config: dict) -> None:
    """The bus settings, within what SQS accepts (the embedded bus takes the same)."""
    from pipeline.events_topic import events_topic_wanted   # not pipeline.bus: kombu loads later
    if not 0 <= config["VISIBILITY_TIMEOUT"] <= 12 * 3600:
        raise ValueError("VISIBILITY_TIMEOUT must be between 0 and 43200 seconds (12 hours)")
    if not 1 <= config["MAX_RECEIVES"] <= 1000:
        raise ValueError("MAX_RECEIVES must be between 1 and 1000")
    if not 60 <= config["MESSAGE_RETENTION"] <= 14 * 24 * 3600:
        raise ValueError("MESSAGE_RETENTION must be between 60 and 1209600 seconds (14 days)")
    events_topic_wanted(config["BUS_URL"], config["EVENTS_TOPIC"])


def _check_ec2(config: dict) -> None:
    if not config["BUS_URL"].startswith("sqs://"):
        raise ValueError("FLEET=ec2 needs an SQS bus that instances can reach: set BUS_URL to sqs://")
    if not config["EC2_WORKER_PROFILE"]:
        raise ValueError("FLEET=ec2 needs EC2_WORKER_PROFILE: the instance profile workers run with")
    for key in ("EC2_IDLE_SECONDS", "EC2_SWEEP_SECONDS"):
        if int(config[key]) < 0:
            raise ValueError(f"{key} must not be negative")
    if int(config["EC2_MAX_WORKERS_PER_REGION"]) < 1:
        raise ValueError("EC2_MAX_WORKERS_PER_REGION must be positive")


def plan_settings(config: dict, *, codec: str = "none"):
    """How jobs are planned on this head node (a codec job reads objects whole up to CODEC_MAX_OBJECT)."""
    from pipeline.planner import PlanSettings
    return PlanSettings(multipart_threshold=config["MULTIPART_THRESHOLD"], part_size=config["PART_SIZE"],
                        batch_objects=config["BATCH_OBJECTS"],
                        whole_object_limit=config["CODEC_MAX_OBJECT"] if codec != "none" else 0)


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
