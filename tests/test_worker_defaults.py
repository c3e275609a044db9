"""A worker's defaults are written down three times: the head node's configuration (which
it hands to the workers it starts), the worker's own (for a worker started by hand, without
those variables), and the throughput model the estimates use. They must say the same."""
from __future__ import annotations

import json

from headnode.config import DEFAULTS
from headnode.pricing import SHIPPED_THROUGHPUT
from worker.main import config_from_env

MODEL = json.loads(SHIPPED_THROUGHPUT.read_text())


def test_a_worker_started_by_hand_runs_with_the_head_nodes_defaults():
    worker = config_from_env("us-east-1", {"CLOUDMOVER_BUS_URL": "sqlite-queue:///tmp/q.db",
                                           "CLOUDMOVER_SEALING_KEY": "k"})
    assert worker.task_threads == DEFAULTS["WORKER_THREADS"]
    assert worker.object_threads == DEFAULTS["OBJECT_THREADS"]
    assert worker.copy_bytes_in_flight == DEFAULTS["COPY_BYTES_IN_FLIGHT"]
    assert worker.codec.max_object == DEFAULTS["CODEC_MAX_OBJECT"]
    assert worker.bus.visibility_timeout == DEFAULTS["VISIBILITY_TIMEOUT"]
    assert worker.bus.max_receives == DEFAULTS["MAX_RECEIVES"]
    assert worker.bus.retention_seconds == DEFAULTS["MESSAGE_RETENTION"]
    assert worker.bus.prefix == DEFAULTS["QUEUE_PREFIX"]


def test_the_throughput_model_assumes_the_defaults():
    model = MODEL["model"]
    assert model["object_threads"] == DEFAULTS["OBJECT_THREADS"]
    assert model["part_threads"] == DEFAULTS["WORKER_THREADS"]
    assert model["copy_bytes_in_flight"] == DEFAULTS["COPY_BYTES_IN_FLIGHT"]
