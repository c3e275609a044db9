"""The worker loop: long-poll the region's task queue, execute, report, settle.

A task is acknowledged only after its event is published, so a worker killed
at any point loses nothing: the queue redelivers the task when its lease runs
out. While a task runs, its lease is extended. A retryable failure is
reported (with the attempt number) and the task comes back after a backoff;
after ``max_receives`` deliveries the queue moves it to the dead-letter queue,
where the head node records it as failed. SIGTERM stops taking new tasks and
lets running ones finish.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass

from pipeline import bus as busmod
from pipeline import errors, messages
from pipeline.retrying import tally_retries
from worker.codec_settings import CodecSettings

log = logging.getLogger("cloudmover.worker")


@dataclass(frozen=True)
class WorkerConfig:
    region: str
    bus: busmod.BusConfig
    sealing_key: str
    task_threads: int = 4
    object_threads: int = 64
    memory_budget: int = 512 << 20
    copy_bytes_in_flight: int = 512 << 20   # bytes of server-side copies (CopyObject) at once
    codec: CodecSettings = CodecSettings()   # the image codec stage: size limit, level, threads
    heartbeat_seconds: float = 5.0
    poll_seconds: float = 0.02   # one receive's wait (on the on-disk bus a stop ends it at once)
    parent_pid: int | None = None   # a worker started by a head node stops when that head node is gone


class Worker:
    def __init__(self, config: WorkerConfig, executor, bus: busmod.Bus):
        self.config, self.executor, self.bus = config, executor, bus
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.queue = busmod.task_queue(config.region)
        self.stopping = threading.Event()
        self._inflight: dict[int, busmod.Delivery] = {}
        self._lock = threading.Lock()
        self.tasks_done = 0
        self.bytes_done = 0

    def run(self) -> None:
        self.bus.ensure(self.queue)
        threads = [threading.Thread(target=self._serve, name=f"task-{n}") for n in range(self.config.task_threads)]
        keeper = threading.Thread(target=self._keep_alive, name="keepalive", daemon=True)
        for thread in threads:
            thread.start()
        keeper.start()
        for thread in threads:
            while thread.is_alive():   # bounded waits: the main thread must get back to run the SIGTERM
                thread.join(0.5)       # handler (an unbounded join can miss it: seen under strace)
        self._heartbeat("stopping")
        self.executor.close()

    def stop(self) -> None:
        self.stopping.set()

    # -- the loop ----------------------------------------------------------------
    def _serve(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    delivery = self.bus.receive(self.queue, timeout=self.config.poll_seconds, stop=self.stopping)
                    if delivery is not None:
                        self._handle(delivery)
                except Exception:  # the bus itself failed: the task (if any) comes back; keep serving
                    log.exception("receiving or reporting a task failed; retrying in a second")
                    self.stopping.wait(1.0)
        finally:
            self.bus.close()

    def _handle(self, delivery: busmod.Delivery) -> None:
        try:
            task = messages.load(delivery.json(), messages.TASKS)
        except errors.MalformedMessage as exc:
            self._reject_malformed(delivery, exc)
            return
        with self._lock:
            self._inflight[id(delivery)] = delivery
        attempt = delivery.receive_count
        try:
            with tally_retries() as retries:
                event = self.executor.execute(task)
            event.update(worker_id=self.worker_id, retries=sum(retries.values()), retry_codes=dict(retries))
            self._publish(event)
            delivery.ack()
            self.tasks_done += 1
            self.bytes_done += _bytes_of(event)
        except errors.PermanentError as exc:
            log.error("task %s failed: %s", task["task_id"], exc)
            self._publish(self._failed(task, exc, retryable=False, attempt=attempt))
            delivery.ack()
        except Exception as exc:  # retryable, or a bug: report it, let the queue redeliver or dead-letter
            if not isinstance(exc, errors.RetryableError):
                log.exception("task %s hit an unexpected error", task["task_id"])
            log.warning("task %s attempt %d failed, will retry: %s", task["task_id"], attempt, exc)
            self._publish(self._failed(task, exc, retryable=True, attempt=attempt))
            delivery.defer(min(60, 2 ** attempt))   # back off before the next delivery
        finally:
            with self._lock:
                self._inflight.pop(id(delivery), None)

    def _publish(self, event: dict) -> None:
        self.bus.publish_event(event)

    def _failed(self, task: dict, exc: Exception, *, retryable: bool, attempt: int) -> dict:
        keys = [o["key"] for o in task["objects"]] if "objects" in task else [task["key"]]
        return messages.build("TaskFailed", job_id=task["job_id"], task_id=task["task_id"],
                              worker_id=self.worker_id, task_type=task["type"], reason=str(exc),
                              retryable=retryable, attempt=max(1, attempt), keys=keys)

    def _reject_malformed(self, delivery: busmod.Delivery, exc: errors.MalformedMessage) -> None:
        """Keep the message (in the dead-letter queue) and say why; never drop it."""
        log.error("malformed task moved to the dead-letter queue: %s", exc)
        self.bus.publish(self.bus.dead_letter(self.queue), {"malformed": str(exc), "raw": delivery.raw[:100_000]})
        delivery.ack()

    # -- leases and heartbeats ----------------------------------------------------
    def _keep_alive(self) -> None:
        extend_every = max(1.0, self.bus.config.visibility_timeout / 3)
        last_extend = last_beat = 0.0
        while not self.stopping.wait(0.5):
            if self.config.parent_pid and os.getppid() != self.config.parent_pid:
                log.warning("the head node that started this worker is gone; stopping")
                self.stop()
            now = time.monotonic()
            if now - last_extend >= extend_every:
                with self._lock:
                    held = list(self._inflight.values())
                for delivery in held:
                    delivery.extend(self.bus.config.visibility_timeout)
                last_extend = now
            if now - last_beat >= self.config.heartbeat_seconds:
                with self._lock:
                    busy = bool(self._inflight)
                self._heartbeat("busy" if busy else "idle")
                last_beat = now
        self.bus.close()

    def _heartbeat(self, state: str) -> None:
        try:
            self.bus.publish_event(messages.build(
                "WorkerHeartbeat", worker_id=self.worker_id, region=self.config.region, state=state,
                tasks_done=self.tasks_done, bytes_done=self.bytes_done, sent_at=time.time()))
        except Exception as exc:  # a missed heartbeat must not stop the worker
            log.warning("heartbeat not sent: %s", exc)


def _bytes_of(event: dict) -> int:
    if event["type"] == "PartCopied":
        return event["size"]
    return sum(o["size"] for o in event.get("copied", ()) if not o.get("skipped"))
