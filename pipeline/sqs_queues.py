"""SQS specifics of the bus: queues with a redrive policy, and visibility.

A task queue, and the events queue, are created with a dead-letter queue and a
redrive policy, so SQS itself moves a message that keeps failing
(``max_receives`` deliveries) to the dead-letter queue, as the embedded bus
does. Every queue keeps a message ``retention_seconds``. Creation is
idempotent: SQS returns the existing queue when the attributes agree, and an
existing queue whose attributes differ (kombu creates a queue on first use
with its own, and settings change between starts) is updated to ours. The
settings and why they are what they are: docs/aws-queues.md.
"""
from __future__ import annotations

import json

import boto3
import botocore.exceptions

from pipeline.errors import RetryableError


def aws_client(bus, service: str = "sqs", *, config=None):
    """A boto3 client of ``service`` (sqs, sns, sts) at the bus's endpoint, with its credentials."""
    from pipeline.bus import sqs_endpoint
    args = sqs_endpoint(bus.config.url)
    if "endpoint_url" in args and bus.config.transport_options.get("is_secure", False):
        args["endpoint_url"] = args["endpoint_url"].replace("http://", "https://", 1)
    return boto3.client(service, region_name=bus_region(bus), config=config, **args)


def bus_region(bus) -> str:
    """The AWS region of the bus's queues (and events topic): kombu's ``region`` transport option."""
    return bus.config.transport_options.get("region", "us-east-1")


def has_dead_letter(queue: str) -> bool:
    """Queues whose poison messages SQS sets aside: task queues and the events queue."""
    from pipeline.bus import EVENTS
    return queue.startswith("tasks-") or queue == EVENTS


def ensure_sqs_queue(bus, queue: str, *, policy: str | None = None, client=None) -> str:
    """Create ``queue`` (with a dead-letter queue when it has one) with the bus's settings; its URL.

    ``policy``: the queue's access policy (JSON), e.g. one letting an SNS topic send to it.
    """
    client = client or aws_client(bus)
    retention = str(bus.config.retention_seconds)
    attributes = {"VisibilityTimeout": str(bus.config.visibility_timeout),
                  "MessageRetentionPeriod": retention,
                  "ReceiveMessageWaitTimeSeconds": str(bus.config.wait_seconds)}
    if has_dead_letter(queue):
        dlq_url = _create_queue(client, bus.name(bus.dead_letter(queue)), {"MessageRetentionPeriod": retention})
        attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": queue_arn(client, dlq_url),
                                                  "maxReceiveCount": str(bus.config.max_receives)})
    if policy is not None:
        attributes["Policy"] = policy
    return _create_queue(client, bus.name(queue), attributes)


def queue_arn(client, url: str) -> str:
    return client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def _create_queue(client, name: str, attributes: dict) -> str:
    """The URL of queue ``name``, created or, when it exists (say, made by kombu with its own
    attributes), given ``attributes``."""
    try:
        return client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    except client.exceptions.QueueNameExists:
        url = client.get_queue_url(QueueName=name)["QueueUrl"]
        client.set_queue_attributes(QueueUrl=url, Attributes=attributes)
        return url


def change_visibility(bus, message, seconds: int) -> bool:
    info = message.delivery_info
    try:
        bus.channel().sqs().change_message_visibility(
            QueueUrl=info["sqs_queue"], ReceiptHandle=info["sqs_message"]["ReceiptHandle"],
            VisibilityTimeout=seconds)
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("ReceiptHandleIsInvalid", "InvalidParameterValue",
                                                         "MessageNotInflight"):
            return False
        raise RetryableError(f"extending a task's visibility failed: {exc}") from exc
    return True
