"""Receiving from the embedded on-disk bus: what a wait returns, and that a stop ends it."""
import threading
import time

import pytest

from pipeline import bus as busmod


@pytest.fixture
def bus(tmp_path):
    bus = busmod.Bus(busmod.BusConfig(url=f"sqlite-queue://{tmp_path}/queue.db"))
    bus.ensure("work")
    yield bus
    bus.close()


def _publish_later(bus, delay: float, body: dict) -> threading.Thread:
    def publish():
        time.sleep(delay)
        other = busmod.Bus(bus.config)   # another connection, as a worker in another process has
        other.publish("work", body)
        other.close()
    thread = threading.Thread(target=publish)
    thread.start()
    return thread


def test_a_message_sent_during_the_wait_is_received_within_it(bus):
    sender = _publish_later(bus, 0.3, {"n": 1})
    delivery = bus.receive("work", timeout=30)
    sender.join()
    assert delivery is not None and delivery.json() == {"n": 1}
    delivery.ack()
    assert bus.receive("work", timeout=0) is None, "acknowledged: gone from the queue"


def test_an_empty_queue_gives_none_after_the_timeout(bus):
    started = time.monotonic()
    assert bus.receive("work", timeout=0.2) is None
    assert time.monotonic() - started >= 0.15, "it waited out the timeout, not returning at the first empty poll"


def test_a_stop_ends_the_wait_at_once_and_a_message_already_there_is_still_taken(bus):
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    assert bus.receive("work", timeout=60, stop=stop) is None
    assert time.monotonic() - started < 30, "the stop, not the timeout, ended the wait"

    bus.publish("work", {"n": 2})
    assert bus.receive("work", timeout=0, stop=stop).json() == {"n": 2}, \
        "a message already there is taken even once stopping"


def test_an_unacknowledged_message_comes_back_after_its_lease(tmp_path):
    bus = busmod.Bus(busmod.BusConfig(url=f"sqlite-queue://{tmp_path}/queue.db", visibility_timeout=1))
    bus.ensure("work")
    bus.publish("work", {"n": 3})
    first = bus.receive("work", timeout=5)
    assert first is not None and first.receive_count == 1
    again = bus.receive("work", timeout=30)
    assert again is not None and again.json() == {"n": 3} and again.receive_count == 2
    again.ack()
    bus.close()
