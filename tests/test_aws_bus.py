"""Queues and events in AWS (issue 5), against the moto server over HTTP: the head
node creates the task queues with dead-letter queues, the SNS events topic and
the events queue subscribed to it (raw delivery) idempotently and as
configured; workers publish their events to the topic and the head node turns
them into a real job's progress; a malformed event that came through the topic
is kept in the dead-letter queue with its text."""
from __future__ import annotations

import json

import pytest

from conftest import bus_config
from pipeline import bus as busmod
from pipeline import errors
from pipeline.events_topic import events_topic_wanted
from pipeline.sns_events import ensure_events_topic
from support.objects import assert_same_objects, put_objects, small_and_large
from support.waiting import wait_finished, wait_for

REGION = "eu-west-3"


def sqs_bus(settings: dict, **config) -> busmod.Bus:
    """A bus like the one a head node with ``settings`` (``bus_config``) builds."""
    return busmod.Bus(busmod.BusConfig(url=settings["BUS_URL"], transport_options=settings["BUS_OPTIONS"],
                                       prefix=settings["QUEUE_PREFIX"], **config))


def wiring(moto, bus: busmod.Bus) -> dict:
    """Everything SQS and SNS hold about the bus's queues and topic, as the services describe it."""
    sqs, sns = moto.client("sqs"), moto.client("sns")
    queues = {}
    for queue in (busmod.task_queue(REGION), bus.dead_letter(busmod.task_queue(REGION)),
                  busmod.EVENTS, bus.dead_letter(busmod.EVENTS)):
        url = sqs.get_queue_url(QueueName=bus.name(queue))["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        queues[queue] = {k: v for k, v in attributes.items()
                         if k not in ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                                      "ApproximateNumberOfMessagesDelayed", "LastModifiedTimestamp")}
    topics = [t["TopicArn"] for t in sns.list_topics()["Topics"] if t["TopicArn"].endswith(":" + bus.name("events"))]
    subscriptions = [{**s, "attributes": sns.get_subscription_attributes(SubscriptionArn=s["SubscriptionArn"])
                      ["Attributes"]} for topic in topics
                     for s in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]]
    return {"queues": queues, "topics": topics, "subscriptions": subscriptions}


def test_the_queues_and_topic_are_created_as_configured_and_again_unchanged(moto, tmp_path):
    settings = bus_config("sqs", tmp_path, moto)
    bus = sqs_bus(settings, visibility_timeout=77, max_receives=3, retention_seconds=3 * 24 * 3600,
                  wait_seconds=2, events_topic=True)
    bus.ensure(busmod.task_queue(REGION))
    first_made = ensure_events_topic(bus)
    first = wiring(moto, bus)

    queues = first["queues"]
    for queue in (busmod.task_queue(REGION), busmod.EVENTS):
        dead_letter = queues[bus.dead_letter(queue)]
        assert queues[queue]["VisibilityTimeout"] == "77"
        assert queues[queue]["MessageRetentionPeriod"] == dead_letter["MessageRetentionPeriod"] == str(3 * 24 * 3600)
        assert queues[queue]["ReceiveMessageWaitTimeSeconds"] == "2"
        assert json.loads(queues[queue]["RedrivePolicy"]) == {"deadLetterTargetArn": dead_letter["QueueArn"],
                                                              "maxReceiveCount": 3}
    assert first["topics"] == [first_made.topic_arn]
    [subscription] = first["subscriptions"]
    assert subscription["SubscriptionArn"] == first_made.subscription_arn
    assert (subscription["Protocol"], subscription["Endpoint"]) == ("sqs", queues[busmod.EVENTS]["QueueArn"])
    assert subscription["attributes"]["RawMessageDelivery"] == "true"
    [statement] = json.loads(queues[busmod.EVENTS]["Policy"])["Statement"]
    assert statement == {"Sid": "EventsTopicSends", "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"},
                         "Action": "sqs:SendMessage", "Resource": queues[busmod.EVENTS]["QueueArn"],
                         "Condition": {"ArnEquals": {"aws:SourceArn": first_made.topic_arn}}}
    assert "Policy" not in queues[busmod.task_queue(REGION)]

    bus.ensure(busmod.task_queue(REGION))   # a head node starting again
    assert ensure_events_topic(bus) == first_made
    assert wiring(moto, bus) == first


def test_changed_settings_and_a_queue_kombu_made_first_are_brought_to_the_configuration(moto, tmp_path):
    settings = bus_config("sqs", tmp_path, moto)
    early = sqs_bus(settings, events_topic=True)
    early.receive(busmod.EVENTS, timeout=0.1)   # kombu creates the queue with its own attributes
    early.close()
    sqs = moto.client("sqs")
    url = sqs.get_queue_url(QueueName=early.name(busmod.EVENTS))["QueueUrl"]
    assert "RedrivePolicy" not in sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]

    made = ensure_events_topic(sqs_bus(settings, max_receives=2, events_topic=True))
    assert made.queue_url == url
    again = ensure_events_topic(sqs_bus(settings, max_receives=9, visibility_timeout=300, events_topic=True))
    assert again == made
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert json.loads(attributes["RedrivePolicy"])["maxReceiveCount"] == 9
    assert attributes["VisibilityTimeout"] == "300" and "Policy" in attributes


def test_a_worker_event_arrives_raw_in_the_events_queue(moto, tmp_path):
    settings = bus_config("sqs", tmp_path, moto)
    made = ensure_events_topic(sqs_bus(settings, events_topic=True))
    event = {"schema_version": 1, "type": "WorkerHeartbeat", "worker_id": "w-1", "region": REGION,
             "state": "idle", "tasks_done": 0, "bytes_done": 0, "sent_at": 1.5}
    worker_bus = sqs_bus(settings, events_topic=True)
    worker_bus.publish_event(event)

    sqs = moto.client("sqs")
    received = sqs.receive_message(QueueUrl=made.queue_url, WaitTimeSeconds=5)["Messages"]
    assert [json.loads(m["Body"]) for m in received] == [event]   # the event itself, no SNS envelope


def test_a_worker_publishing_before_the_topic_exists_gets_a_retryable_error(moto, tmp_path):
    worker_bus = sqs_bus(bus_config("sqs", tmp_path, moto), events_topic=True)
    with pytest.raises(errors.RetryableError, match="does not exist"):
        worker_bus.publish_event({"type": "WorkerHeartbeat"})


def test_a_copy_job_runs_with_events_through_the_topic(moto, buckets, s3_env, head_node, tmp_path):
    source, dest = buckets
    client = s3_env.client()
    objects = small_and_large(11, small=40)
    put_objects(client, source, objects)
    settings = bus_config("sqs", tmp_path, moto)
    node = head_node(workers=1, ENDPOINT_URL=s3_env.endpoint_url, EVENTS_TOPIC="sns", BATCH_OBJECTS=10, **settings)
    # a second subscriber sees what the workers publish to the topic
    topic_arn = ensure_events_topic(node.bus).topic_arn
    sqs, sns = moto.client("sqs"), moto.client("sns")
    probe = sqs.create_queue(QueueName=settings["QUEUE_PREFIX"] + "probe")["QueueUrl"]
    probe_arn = sqs.get_queue_attributes(QueueUrl=probe, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=probe_arn, Attributes={"RawMessageDelivery": "true"})

    job = node.service.create(source=f"s3://{source}/", destination=f"s3://{dest}/copy/")
    job = wait_finished(node.service, job.id)

    assert job.state == "complete", job.error
    assert (job.objects_total, job.objects_done, job.objects_failed) == (len(objects),) * 2 + (0,)
    assert job.bytes_done == sum(len(body) for body in objects.values())
    assert_same_objects(client, dest, objects, prefix="copy/")
    seen = []
    while messages := sqs.receive_message(QueueUrl=probe, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages"):
        seen += [json.loads(m["Body"]) for m in messages]
        sqs.delete_message_batch(QueueUrl=probe, Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                                                          for n, m in enumerate(messages)])
    done = [e for e in seen if e["type"] == "ObjectsCopied" and e["job_id"] == job.id]
    assert sum(len(e["copied"]) for e in done) == len(objects)


def test_a_malformed_event_from_the_topic_is_kept_with_its_text(moto, head_node, tmp_path):
    node = head_node(FLEET="none", EVENTS_TOPIC="sns", **bus_config("sqs", tmp_path, moto))
    topic_arn = ensure_events_topic(node.bus).topic_arn
    moto.client("sns").publish(TopicArn=topic_arn, Message="{not an event")

    kept = wait_for(lambda: node.bus.receive(node.bus.dead_letter(busmod.EVENTS), timeout=1), timeout=60,
                    what="the malformed event in the dead-letter queue")
    body = kept.json()
    kept.ack()
    assert body["raw"] == "{not an event" and "not valid JSON" in body["malformed"]
    # and the head node goes on applying the events that follow
    sqs_bus(bus_config("sqs", tmp_path, moto) | {"QUEUE_PREFIX": node.config["QUEUE_PREFIX"]},
            events_topic=True).publish_event(
        {"schema_version": 1, "type": "WorkerHeartbeat", "worker_id": "w-after", "region": REGION, "state": "idle",
         "tasks_done": 0, "bytes_done": 0, "sent_at": 2.0})
    from headnode.models import WorkerState
    wait_for(lambda: WorkerState.get_or_none(WorkerState.worker_id == "w-after"), timeout=60,
             what="the next event to be applied")


@pytest.mark.parametrize("url, setting, wanted", [
    ("sqs://", "auto", True),
    ("sqs://KEY:SECRET@", "auto", True),
    ("sqs://testing:testing@127.0.0.1:5000", "auto", False),
    ("sqlite-queue:///tmp/q.db", "auto", False),
    ("sqs://testing:testing@127.0.0.1:5000", "sns", True),
    ("sqs://", "none", False),
])
def test_where_events_go(url, setting, wanted):
    assert events_topic_wanted(url, setting) is wanted


@pytest.mark.parametrize("overrides, reason", [
    ({"EVENTS_TOPIC": "sns"}, "needs an SQS bus"),
    ({"EVENTS_TOPIC": "kafka"}, "choose one of"),
    ({"MESSAGE_RETENTION": 30}, "MESSAGE_RETENTION"),
    ({"MAX_RECEIVES": 0}, "MAX_RECEIVES"),
    ({"VISIBILITY_TIMEOUT": 50_000}, "VISIBILITY_TIMEOUT"),
])
def test_bus_settings_outside_what_sqs_takes_are_refused(overrides, reason, tmp_path):
    from headnode.config import load_config
    with pytest.raises(ValueError, match=reason):
        load_config({"DATA_DIR": str(tmp_path), **overrides}, env={})
