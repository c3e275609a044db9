"""SQS specifics of the bus: queues with a redrive policy, and visibility.

A task queue is created with a dead-letter queue and a redrive policy, so SQS
itself moves a task that keeps failing (``max_receives`` deliveries) to the
dead-letter queue. Creation is idempotent: SQS returns the existing queue when
the attributes agree, and an existing queue whose attributes differ (kombu
creates a queue on first use with its own) is updated to ours.
"""
from __future__ import annotations

import json

import boto3
import botocore.exceptions

from pipeline.errors import RetryableError


def _client(bus):
    options = bus.config.transport_options
    from pipeline.bus import sqs_endpoint
    args = sqs_endpoint(bus.config.url)
    if "endpoint_url" in args and options.get("is_secure", False):
        args["endpoint_url"] = args["endpoint_url"].replace("http://", "https://", 1)
    return boto3.client("sqs", region_name=options.get("region", "us-east-1"), **args)


def ensure_sqs_queue(bus, queue: str) -> str:
    """Create ``queue`` (with a dead-letter queue when it carries tasks); its URL."""
    client = _client(bus)
    attributes = {"VisibilityTimeout": str(bus.config.visibility_timeout),
                  "MessageRetentionPeriod": str(14 * 24 * 3600),
                  "ReceiveMessageWaitTimeSeconds": str(bus.config.wait_seconds)}
    if queue.startswith("tasks-"):
        dlq_url = _create_queue(client, bus.name(bus.dead_letter(queue)),
                                {"MessageRetentionPeriod": str(14 * 24 * 3600)})
        dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])
        attributes["RedrivePolicy"] = json.dumps({
            "deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"],
            "maxReceiveCount": str(bus.config.max_receives)})
    return _create_queue(client, bus.name(queue), attributes)


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
