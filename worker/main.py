"""``cloudmover-worker --region R``: run one worker process.

Configuration comes from the environment (the head node's fleet provider sets
it): ``CLOUDMOVER_BUS_URL``, ``CLOUDMOVER_BUS_OPTIONS`` (JSON transport
options), ``CLOUDMOVER_QUEUE_PREFIX`` (the head node's queue name prefix),
``CLOUDMOVER_SEALING_KEY`` (opens sealed credentials: ``sealing_key`` of the head node's secret), ``CLOUDMOVER_WORKER_THREADS``,
``CLOUDMOVER_OBJECT_THREADS``, ``CLOUDMOVER_VISIBILITY_TIMEOUT``, ``CLOUDMOVER_MAX_RECEIVES``,
``CLOUDMOVER_MESSAGE_RETENTION`` (SQS), ``CLOUDMOVER_EVENTS_TOPIC`` (``sns``, ``none`` or ``auto``:
where events go on an SQS bus, docs/aws-queues.md),
``CLOUDMOVER_PARENT_PID`` (set by a local fleet: the worker stops when that process is gone),
``CLOUDMOVER_MEMORY_BUDGET`` (bytes held in buffers at once, default 512 MiB),
``CLOUDMOVER_COPY_BYTES_IN_FLIGHT`` (bytes of server-side copies at once, default 512 MiB), and for the image
codec stage ``CLOUDMOVER_CODEC_MAX_OBJECT`` (larger objects move unchanged, default 1 GiB),
``CLOUDMOVER_CODEC_LEVEL`` (default 2), ``CLOUDMOVER_CODEC_THREADS`` (per object; default: the
codec decides) and ``CLOUDMOVER_CODEC_VERIFY`` (decode each container before keeping it; default 1).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys

import pipeline.s3store  # noqa: F401  (loaded before the first task arrives, not on its clock)
from pipeline.bus import Bus, BusConfig
from pipeline.events_topic import events_topic_wanted
from pipeline.exiting import exit_now
from pipeline.credentials import Sealer
from pipeline.store import StoreCache
from worker.codec_settings import CodecSettings
from worker.executor import Executor
from worker.runner import Worker, WorkerConfig
from worker.strategies import MemoryBudget


def config_from_env(region: str, env=os.environ) -> WorkerConfig:
    missing = [name for name in ("CLOUDMOVER_BUS_URL", "CLOUDMOVER_SEALING_KEY") if not env.get(name)]
    if missing:
        raise SystemExit(f"cloudmover-worker: set {', '.join(missing)} (the head node's values)")
    try:
        events_topic = events_topic_wanted(env["CLOUDMOVER_BUS_URL"], env.get("CLOUDMOVER_EVENTS_TOPIC", "auto"))
    except ValueError as exc:
        raise SystemExit(f"cloudmover-worker: CLOUDMOVER_EVENTS_TOPIC: {exc}") from None
    bus = BusConfig(url=env["CLOUDMOVER_BUS_URL"],
                    transport_options=json.loads(env.get("CLOUDMOVER_BUS_OPTIONS") or "{}"),
                    prefix=env.get("CLOUDMOVER_QUEUE_PREFIX", BusConfig.prefix),
                    visibility_timeout=int(env.get("CLOUDMOVER_VISIBILITY_TIMEOUT", 120)),
                    max_receives=int(env.get("CLOUDMOVER_MAX_RECEIVES", 5)),
                    retention_seconds=int(env.get("CLOUDMOVER_MESSAGE_RETENTION", BusConfig.retention_seconds)),
                    events_topic=events_topic)
    return WorkerConfig(region=region, bus=bus, sealing_key=env["CLOUDMOVER_SEALING_KEY"],
                        task_threads=int(env.get("CLOUDMOVER_WORKER_THREADS", WorkerConfig.task_threads)),
                        object_threads=int(env.get("CLOUDMOVER_OBJECT_THREADS", WorkerConfig.object_threads)),
                        memory_budget=int(env.get("CLOUDMOVER_MEMORY_BUDGET", WorkerConfig.memory_budget)),
                        copy_bytes_in_flight=int(env.get("CLOUDMOVER_COPY_BYTES_IN_FLIGHT",
                                                         WorkerConfig.copy_bytes_in_flight)),
                        codec=codec_settings_from_env(env),
                        parent_pid=int(env["CLOUDMOVER_PARENT_PID"]) if env.get("CLOUDMOVER_PARENT_PID") else None)


def codec_settings_from_env(env) -> CodecSettings:
    defaults = CodecSettings()
    threads = env.get("CLOUDMOVER_CODEC_THREADS")
    return CodecSettings(max_object=int(env.get("CLOUDMOVER_CODEC_MAX_OBJECT", defaults.max_object)),
                         level=int(env.get("CLOUDMOVER_CODEC_LEVEL", defaults.level)),
                         threads=int(threads) if threads else defaults.threads,
                         verify=env.get("CLOUDMOVER_CODEC_VERIFY", "1").lower() not in ("0", "false", "no", "off"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="cloudmover-worker", description=__doc__.splitlines()[0])
    parser.add_argument("--region", required=True, help="region whose task queue this worker drains")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = config_from_env(args.region)
    stores = StoreCache(Sealer.from_sealing_key(config.sealing_key), pool_size=config.object_threads * config.task_threads)
    executor = Executor(stores, object_threads=config.object_threads, memory=MemoryBudget(config.memory_budget),
                        copying=MemoryBudget(config.copy_bytes_in_flight), codec=config.codec)
    worker = Worker(config, executor, Bus(config.bus))
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    signal.signal(signal.SIGINT, lambda *_: worker.stop())
    logging.getLogger("cloudmover.worker").info("worker %s draining %s", worker.worker_id, worker.queue)
    worker.run()
    return 0


def run() -> None:
    """The ``cloudmover-worker`` command: once stopped, the worker ends at once."""
    exit_now(main())


if __name__ == "__main__":
    run()
