"""Where workers send events on an SQS bus: the ``EVENTS_TOPIC`` setting.

Kept apart from ``pipeline.bus`` (which loads kombu) so that reading the
configuration stays cheap: ``cloudmover cp`` starts its workers before it loads
the bus.
"""
from __future__ import annotations

from urllib.parse import urlparse

EVENTS_TOPIC_SETTINGS = ("auto", "sns", "none")


def events_topic_wanted(url: str, setting: str) -> bool:
    """Whether events go through the SNS topic: ``sns`` (needs an SQS bus), ``none``, or ``auto``:
    on an SQS bus in AWS itself (``sqs://`` naming no host), where SNS is always there; not on
    another SQS endpoint, which may have no SNS beside it."""
    if setting not in EVENTS_TOPIC_SETTINGS:
        raise ValueError(f"events topic setting {setting!r}: choose one of {', '.join(EVENTS_TOPIC_SETTINGS)}")
    is_sqs = url.startswith("sqs://")
    if setting == "sns" and not is_sqs:
        raise ValueError("an SNS events topic needs an SQS bus (a bus URL starting sqs://)")
    return setting == "sns" or (setting == "auto" and is_sqs and not urlparse(url).hostname)
