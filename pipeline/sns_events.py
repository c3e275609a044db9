"""The SNS topic workers publish their events to, on an SQS bus.

Wiring, created idempotently by the head node (``ensure_events_topic``)::

    topic <prefix>events --subscription (RawMessageDelivery=true)--> queue <prefix>events
                                                                     └─ dead letters: <prefix>events-dlq

The queue's policy lets that one topic (and nothing else through SNS) send to
it. Raw delivery makes the SQS body the event's JSON itself, not an SNS
envelope, so the head node reads the queue exactly as it reads events sent
straight to it, and a malformed event takes the same dead-letter path.

Workers publish with ``EventTopic`` (boto3 SNS Publish: one small request per
task, on a client kombu's SQS transport has already paid the import of; a
hand-signed request saved too little to be worth a second code path, see
docs/aws-queues.md). A worker never creates the topic: it builds the ARN from
its account (STS GetCallerIdentity, which needs no permission) and the bus
region, so it needs only ``sns:Publish`` on that topic, and a worker started
before the head node's wiring gets NotFound and retries instead of publishing
into a topic nobody reads.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass

import botocore.config
import botocore.exceptions

from pipeline import errors
from pipeline.sqs_queues import aws_client, bus_region, ensure_sqs_queue, queue_arn

# SNS answers that retrying fixes; anything else (AuthorizationError, InvalidParameter…) is a setup error
_RETRYABLE = {"NotFound", "Throttled", "Throttling", "ThrottlingException", "InternalError", "InternalFailure",
              "ServiceUnavailable", "KMSThrottling", "RequestTimeout"}
_PUBLISH_CONFIG = botocore.config.Config(retries={"mode": "standard", "max_attempts": 4},
                                         connect_timeout=5, read_timeout=30)


@dataclass(frozen=True)
class EventsWiring:
    """What ``ensure_events_topic`` made (or found): the same every time it runs."""
    topic_arn: str
    queue_url: str
    queue_arn: str
    subscription_arn: str


def ensure_events_topic(bus) -> EventsWiring:
    """Create the events topic, the events queue (with its dead-letter queue and a policy letting
    the topic send) and the raw-delivery subscription between them, or bring them to these settings."""
    from pipeline.bus import EVENTS
    sns, sqs = aws_client(bus, "sns"), aws_client(bus, "sqs")
    topic_arn = sns.create_topic(Name=bus.name(EVENTS))["TopicArn"]
    _, partition, _, region, account, _ = topic_arn.split(":", 5)
    # the queue's ARN is known before it exists, so it is created with its policy in one call
    expected_arn = f"arn:{partition}:sqs:{region}:{account}:{bus.name(EVENTS)}"
    queue_url = ensure_sqs_queue(bus, EVENTS, policy=topic_may_send(expected_arn, topic_arn), client=sqs)
    arn = queue_arn(sqs, queue_url)
    if arn != expected_arn:   # an SQS whose ARNs follow other rules than SNS's: set the policy again
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": topic_may_send(arn, topic_arn)})
    return EventsWiring(topic_arn=topic_arn, queue_url=queue_url, queue_arn=arn,
                        subscription_arn=_subscribe(sns, topic_arn, arn))


def topic_may_send(queue_arn_: str, topic_arn: str) -> str:
    """The events queue's access policy: SNS may send to it on behalf of the events topic only."""
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "EventsTopicSends", "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"},
        "Action": "sqs:SendMessage", "Resource": queue_arn_,
        "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}}}]}, separators=(",", ":"))


def _subscribe(sns, topic_arn: str, queue_arn_: str) -> str:
    """The queue's subscription to the topic, with raw delivery (subscribing again returns it)."""
    try:
        arn = sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn_,
                            Attributes={"RawMessageDelivery": "true"}, ReturnSubscriptionArn=True)["SubscriptionArn"]
    except sns.exceptions.InvalidParameterException:   # it exists with other attributes: find it, fix it
        arn = _find_subscription(sns, topic_arn, queue_arn_)
    attributes = sns.get_subscription_attributes(SubscriptionArn=arn)["Attributes"]
    if attributes.get("RawMessageDelivery") != "true":
        sns.set_subscription_attributes(SubscriptionArn=arn, AttributeName="RawMessageDelivery",
                                        AttributeValue="true")
    return arn


def _find_subscription(sns, topic_arn: str, queue_arn_: str) -> str:
    for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic_arn):
        for subscription in page["Subscriptions"]:
            if subscription["Protocol"] == "sqs" and subscription["Endpoint"] == queue_arn_:
                return subscription["SubscriptionArn"]
    raise errors.PermanentError(f"SNS refused to subscribe {queue_arn_} to {topic_arn} and lists no such "
                                f"subscription")


class EventTopic:
    """Publishes events to the bus's events topic; thread-safe (one boto3 client, made on first use)."""

    def __init__(self, bus):
        self._bus = bus
        self._lock = threading.Lock()
        self._client = None
        self._arn: str | None = None

    @property
    def arn(self) -> str:
        self._connect()
        return self._arn

    def publish(self, text: str) -> None:
        client, arn = self._connect()
        try:
            client.publish(TopicArn=arn, Message=text)
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "NotFound":
                raise errors.RetryableError(f"the events topic {arn} does not exist (yet): the head node "
                                            f"creates it when it starts with the same QUEUE_PREFIX") from None
            cls = errors.RetryableError if code in _RETRYABLE else errors.PermanentError
            raise cls(f"publishing an event to {arn} failed: {code}: {exc}") from None
        except botocore.exceptions.BotoCoreError as exc:   # connection refused, timeouts
            raise errors.RetryableError(f"publishing an event to {arn} failed: {exc}") from None

    def _connect(self):
        with self._lock:
            if self._client is None:
                self._arn = self._topic_arn()
                self._client = aws_client(self._bus, "sns", config=_PUBLISH_CONFIG)
            return self._client, self._arn

    def _topic_arn(self) -> str:
        from pipeline.bus import EVENTS
        try:
            caller = aws_client(self._bus, "sts").get_caller_identity()
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise errors.RetryableError(f"finding this worker's AWS account (STS) failed: {exc}") from None
        partition = caller["Arn"].split(":")[1]
        return f"arn:{partition}:sns:{bus_region(self._bus)}:{caller['Account']}:{self._bus.name(EVENTS)}"
