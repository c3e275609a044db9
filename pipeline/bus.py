"""The message bus between head node and workers, on kombu.

Queues (names get the configured prefix):
  ``tasks-<region>``   tasks for the workers of one region
  ``events``           events from workers back to the head node
  ``submissions``      jobs sent by integrators
  ``submission-replies``  the answer to each: JobAccepted or SubmissionRejected
and a dead-letter queue beside each task queue: a message received
``max_receives`` times without being acknowledged lands there, and the head
node records its task as failed.

Transports: ``sqlite-queue:///path/queue.db`` (the embedded default: durable,
redelivers the tasks of a killed worker), ``sqs://KEY:SECRET@host:port`` (any
SQS endpoint; ``sqs://`` alone is AWS). Bodies are JSON. kombu connections are
not thread-safe, so each thread gets its own.

Events topic: on an SQS bus with ``events_topic``, workers publish events to the
SNS topic ``events``, subscribed by the ``events`` queue with raw delivery
(``pipeline.sns_events``); the head node reads that queue either way. Which
setting means what: ``pipeline.events_topic``; the AWS settings: docs/aws-queues.md.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import unquote, urlparse

import pipeline.kombu_loading  # noqa: F401  (before kombu: loads it without PyYAML)
import kombu

from pipeline import sqlite_transport
from pipeline.errors import MalformedMessage

EVENTS = "events"
SUBMISSIONS = "submissions"
SUBMISSION_REPLIES = "submission-replies"
MAX_RETENTION = 14 * 24 * 3600   # SQS's longest MessageRetentionPeriod


def task_queue(region: str) -> str:
    return f"tasks-{region}"


@dataclass(frozen=True)
class BusConfig:
    url: str
    transport_options: dict = field(default_factory=dict)
    prefix: str = "cloudmover-"
    visibility_timeout: int = 120
    max_receives: int = 5
    wait_seconds: int = 1
    retention_seconds: int = MAX_RETENTION   # SQS: how long a queue keeps a message nobody received
    events_topic: bool = False               # SQS: workers publish events to the SNS topic

    @property
    def is_sqs(self) -> bool:
        return self.url.startswith("sqs://")


class Delivery:
    """One received message: its JSON body and how to settle it."""

    def __init__(self, bus: "Bus", queue: str, message):
        self._bus, self.queue, self._message = bus, queue, message
        self.raw = message.body if isinstance(message.body, str) else bytes(message.body).decode("utf-8", "replace")

    def json(self) -> dict:
        try:
            return json.loads(self.raw)
        except ValueError as exc:
            raise MalformedMessage(f"message is not valid JSON: {exc}",
                                   {"_schema": ["not valid JSON"]}) from None

    @property
    def receive_count(self) -> int:
        return self._bus.receive_count(self._message)

    def ack(self) -> None:
        self._message.ack()

    def extend(self, seconds: int) -> bool:
        """Keep the message hidden for ``seconds`` more; False if its lease was lost."""
        return self._bus.extend(self.queue, self._message, seconds)

    def defer(self, seconds: int) -> None:
        """Let the queue deliver the message again in ``seconds`` (a backoff), and free
        this consumer for other messages meanwhile: without the local settle, prefetch
        would keep the consumer waiting on a message it no longer works on."""
        self.extend(seconds)
        self._message.channel.qos.ack(self._message.delivery_tag)


class Bus:
    def __init__(self, config: BusConfig):
        self.config = config
        self._local = threading.local()
        self._topic = None   # the events topic's publisher, made on the first event
        self._topic_lock = threading.Lock()
        if config.events_topic and not config.is_sqs:
            raise ValueError("an SNS events topic needs an SQS bus (a bus URL starting sqs://)")
        if not config.is_sqs:
            sqlite_transport.register()
        self._polling_interval = float(self._transport_options().get("polling_interval") or 0.0)

    # -- naming ---------------------------------------------------------------
    def name(self, queue: str) -> str:
        return self.config.prefix + queue

    def dead_letter(self, queue: str) -> str:
        return queue + ("-dlq" if self.config.is_sqs else ".dlq")

    # -- connections -----------------------------------------------------------
    def _transport_options(self) -> dict:
        options = dict(self.config.transport_options)
        options.setdefault("visibility_timeout", self.config.visibility_timeout)
        if self.config.is_sqs:
            options.setdefault("wait_time_seconds", self.config.wait_seconds)
            options.setdefault("polling_interval", 0)
        else:
            options.setdefault("max_receives", self.config.max_receives)
            # an empty poll is one cheap read (~1.5% of a core per idle worker at 20 ms), and a
            # message waits up to this long: tasks to idle workers, a job's last event to the head
            options.setdefault("polling_interval", 0.02)
        return options

    # One connection per thread for publishing, and one per (thread, queue) for
    # consuming: a kombu consumer drains every queue consumed on its connection,
    # so a shared one would lease other queues' messages into this thread.
    def _publisher(self) -> kombu.Connection:
        conn = getattr(self._local, "publisher", None)
        if conn is None:
            conn = self._local.publisher = self._new_connection()
            self._local.declared = set()
        return conn

    def _new_connection(self) -> kombu.Connection:
        return kombu.Connection(self.config.url, transport_options=self._transport_options())

    def _consumer(self, queue: str) -> kombu.simple.SimpleQueue:
        consumers = self._local.__dict__.setdefault("consumers", {})
        simple = consumers.get(queue)
        if simple is None:
            conn = self._new_connection()
            simple = consumers[queue] = conn.SimpleQueue(self.name(queue), serializer="json")
            simple.consumer.qos(prefetch_count=1)   # never hold (lease) more than the message in hand
        return simple

    def _kombu_queue(self, queue: str) -> kombu.Queue:
        name = self.name(queue)
        return kombu.Queue(name, kombu.Exchange(name), routing_key=name)

    def close(self) -> None:
        """Close this thread's connections."""
        for simple in self._local.__dict__.pop("consumers", {}).values():
            simple.close()
            simple.channel.connection.client.release()
        conn = self._local.__dict__.pop("publisher", None)
        if conn is not None:
            conn.release()

    # -- messages --------------------------------------------------------------
    def ensure(self, queue: str) -> None:
        """Create ``queue`` (and, for task queues, its dead-letter queue) if missing; for the events
        queue of a bus with an events topic, the topic and its subscription too."""
        if self.config.is_sqs and queue == EVENTS and self.config.events_topic:
            from pipeline.sns_events import ensure_events_topic
            ensure_events_topic(self)
        elif self.config.is_sqs:
            from pipeline.sqs_queues import ensure_sqs_queue
            ensure_sqs_queue(self, queue)
        else:
            self._kombu_queue(queue)(self._publisher().default_channel).declare()

    def _send(self, queue: str, body, **options) -> None:
        conn = self._publisher()
        target = self._kombu_queue(queue)
        declare = [] if queue in self._local.declared else [target]
        conn.Producer().publish(body, exchange=target.exchange, routing_key=target.routing_key,
                                declare=declare, **options)
        self._local.declared.add(queue)

    def publish(self, queue: str, body: dict) -> None:
        self._send(queue, body, serializer="json")

    def publish_event(self, event: dict) -> None:
        """Send a worker's event to the head node: to the events topic when the bus has one, else
        to the events queue."""
        if not self.config.events_topic:
            self.publish(EVENTS, event)
            return
        with self._topic_lock:
            if self._topic is None:
                from pipeline.sns_events import EventTopic
                self._topic = EventTopic(self)
        self._topic.publish(json.dumps(event, separators=(",", ":")))

    def publish_raw(self, queue: str, text: str) -> None:
        """Send ``text`` as it is (what an integrator's own client may send)."""
        self._send(queue, text, content_type="text/plain", content_encoding="utf-8")

    def receive(self, queue: str, timeout: float, *, stop: threading.Event | None = None) -> Delivery | None:
        """The next message of ``queue``, waiting up to ``timeout`` seconds for one; None if none came
        (or ``stop`` was set meanwhile: a waiting loop ends at once)."""
        consumer = self._consumer(queue)
        if self.config.is_sqs:   # long polling: SQS answers as soon as a message arrives
            try:
                return Delivery(self, queue, consumer.get(block=True, timeout=timeout))
            except consumer.Empty:
                return None
        return self._poll(queue, consumer, timeout, stop or threading.Event())

    def _poll(self, queue: str, consumer, timeout: float, stop: threading.Event) -> Delivery | None:
        """Poll the on-disk queue every ``polling_interval`` within ``timeout``, but not again at the
        window's end: kombu's own wait polls at both ends, so a loop of short receives polled twice
        per interval, at the same instant."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return Delivery(self, queue, consumer.get(block=False))
            except consumer.Empty:
                pass
            remaining = deadline - time.monotonic()
            wait = min(self._polling_interval or remaining, remaining)
            if wait <= 0 or stop.wait(wait) or wait == remaining:
                return None

    def size(self, queue: str) -> int:
        channel = self._publisher().default_channel
        return channel.queue_declare(self.name(queue), passive=True).message_count

    def receive_count(self, message) -> int:
        if self.config.is_sqs:
            attrs = message.delivery_info.get("sqs_message", {}).get("Attributes", {})
            return int(attrs.get("ApproximateReceiveCount", 1))
        return sqlite_transport.receive_count(message)

    def extend(self, queue: str, message, seconds: int) -> bool:
        if self.config.is_sqs:
            from pipeline.sqs_queues import change_visibility
            return change_visibility(self, message, seconds)
        return sqlite_transport.extend_lease(message, seconds)

    def channel(self):
        return self._publisher().default_channel


def sqs_endpoint(url: str) -> dict:
    """boto3 client arguments for an ``sqs://KEY:SECRET@host:port`` bus URL."""
    parsed = urlparse(url)
    args = {}
    if parsed.username:
        args["aws_access_key_id"] = unquote(parsed.username)
        args["aws_secret_access_key"] = unquote(parsed.password or "")
    if parsed.hostname:
        args["endpoint_url"] = f"http://{parsed.hostname}:{parsed.port or 80}"
    return args
