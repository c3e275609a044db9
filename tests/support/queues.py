"""How many messages a queue of a head node's bus holds, asked of the broker itself."""
from __future__ import annotations

import boto3

from pipeline.bus import sqs_endpoint


def queue_depth(node, queue: str) -> tuple[int, int]:
    """(ready, in flight: received and not yet acknowledged) messages of ``queue``."""
    bus = node.bus
    if bus.config.is_sqs:
        client = boto3.client("sqs", region_name=bus.config.transport_options.get("region", "us-east-1"),
                              **sqs_endpoint(bus.config.url))
        url = client.get_queue_url(QueueName=bus.name(queue))["QueueUrl"]
        attributes = client.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])
    try:
        stats = bus.channel().queue_stats(bus.name(queue))
    finally:
        bus.close()   # the calling (test) thread's connection
    return stats["ready"], stats["in_flight"]
