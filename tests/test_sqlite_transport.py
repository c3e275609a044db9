"""Tests of pipeline.sqlite_transport: real SQLite files, real processes."""
from __future__ import annotations

import json
import multiprocessing
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import kombu
import pytest

from pipeline import sqlite_transport as st
from support.waiting import wait_for

pytestmark = pytest.mark.timeout(240)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _registered():
    st.register()


@pytest.fixture
def url(tmp_path):
    return f"{st.SCHEME}://{tmp_path / 'queue.db'}"   # sqlite-queue:///abs/...


def connect(url, **options):
    options.setdefault("polling_interval", 0.02)
    return kombu.Connection(url, transport_options=options)


def stats(conn, queue):
    return conn.default_channel.queue_stats(queue)


def lease_live(message, margin=0.3):
    return time.time() < st.lease_expires_at(message) - margin


def child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def readline(proc, timeout):
    """One line of the child's stdout, or AssertionError after ``timeout``."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise AssertionError(f"child printed nothing within {timeout}s")
    return proc.stdout.readline()


def kill(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)
    if proc.stdout is not None:
        proc.stdout.close()


# -- basics ---------------------------------------------------------------------------------

def test_simplequeue_roundtrip(url):
    with connect(url) as conn:
        q = conn.SimpleQueue("jobs")
        q.put({"n": 1, "text": "héllo"}, headers={"h": "v"})
        assert q.qsize() == 1
        m = q.get(block=True, timeout=10)
        assert m.payload == {"n": 1, "text": "héllo"}
        assert m.headers["h"] == "v"
        assert st.receive_count(m) == 1
        assert m.delivery_info["redelivered"] is False
        assert st.dead_letter_info(m) is None
        assert stats(conn, "jobs") == {"ready": 0, "in_flight": 1, "total": 1}
        m.ack()
        assert stats(conn, "jobs")["total"] == 0
        with pytest.raises(q.Empty):
            q.get(block=True, timeout=0.2)
        q.close()
    # the row really is gone, as seen by a brand-new connection
    with connect(url) as conn:
        assert stats(conn, "jobs") == {"ready": 0, "in_flight": 0, "total": 0}


def test_consumer_drain_events(url):
    with connect(url) as conn:
        queue = kombu.Queue("work", kombu.Exchange("work", "direct"), routing_key="work")
        producer = conn.Producer(serializer="json")
        for i in range(20):
            producer.publish({"i": i}, exchange=queue.exchange, routing_key="work",
                             declare=[queue])
        got = []

        def on_message(body, message):
            got.append(body["i"])
            message.ack()

        with conn.Consumer(queue, callbacks=[on_message], accept=["json"]):
            deadline = time.monotonic() + 30
            while len(got) < 20 and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=1)
                except socket.timeout:
                    pass
            with pytest.raises(socket.timeout):
                conn.drain_events(timeout=0.2)
        assert got == list(range(20))                    # FIFO
        assert stats(conn, "work")["total"] == 0


def test_default_exchange_publish_and_url_forms(tmp_path):
    path = tmp_path / "sub dir" / "q.db"
    path.parent.mkdir()
    assert st.path_from_url(f"sqlite-queue://{path}") == str(path)          # 3 slashes
    assert st.path_from_url(f"sqlite-queue:///{path}") == str(path)         # 4 slashes
    assert st.path_from_url(f"sqlite-queue://localhost{path}") == str(path)
    assert st.path_from_url("sqlite-queue:///tmp/a%20b.db") == "/tmp/a b.db"
    for bad in ("sqlite-queue://relative/q.db", "sqlite-queue://", "sqlite-queue:///",
                "sqlite-queue:///tmp/q.db?visibility_timeout=3"):
        with pytest.raises(st.TransportOptionError):
            st.path_from_url(bad)
    with kombu.Connection(f"sqlite-queue://{path}") as a, \
            kombu.Connection(f"sqlite-queue:///{path}") as b:
        a.Producer(serializer="json").publish({"x": 1}, routing_key="plain")
        m = b.default_channel.basic_get("plain")
        assert m is not None and json.loads(m.body) == {"x": 1}
        m.ack()
        assert a.transport.path == b.transport.path == str(path)
        assert a.as_uri() == f"sqlite-queue://{path}"
    assert path.exists()


def test_unknown_and_invalid_transport_options_rejected(url):
    with pytest.raises(st.TransportOptionError, match="visiblity_timeout.*visibility_timeout"):
        kombu.Connection(url, transport_options={"visiblity_timeout": 5}).connect()
    for bad in ({"max_receives": 0}, {"visibility_timeout": -1}, {"polling_interval": 0},
                {"max_receives": 2.5}, {"synchronous": "OFF"}, {"visibility_timeout": True}):
        with pytest.raises(st.TransportOptionError):
            kombu.Connection(url, transport_options=bad).connect()
    # kombu's own connection-retry keys and the documented options are accepted
    ok = {"max_retries": 3, "interval_start": 0, "visibility_timeout": "30",
          "max_receives": 3, "polling_interval": 0.5, "busy_timeout": 5,
          "synchronous": "normal"}
    with kombu.Connection(url, transport_options=ok) as conn:
        conn.connect()
        assert conn.default_channel.visibility_timeout == 30.0
        assert conn.transport.polling_interval == 0.5


def test_size_purge_delete_has_queue(url):
    with connect(url) as conn:
        ch = conn.default_channel
        assert not ch._has_queue("q1")
        ch.queue_declare("q1")
        assert ch._has_queue("q1")
        producer = conn.Producer(serializer="json")
        for i in range(5):
            producer.publish({"i": i}, routing_key="q1")
        assert ch._size("q1") == 5
        leased = ch.basic_get("q1")
        assert ch._size("q1") == 4                        # leased ones are not "ready"
        assert ch.queue_purge("q1") == 4                  # purge keeps the leased one
        assert stats(conn, "q1") == {"ready": 0, "in_flight": 1, "total": 1}
        leased.ack()
        producer.publish({"i": 9}, routing_key="q1")
        ch.basic_get("q1")                                # leave one leased
        ch.queue_delete("q1")                             # delete drops everything
        assert not ch._has_queue("q1")
        assert stats(conn, "q1")["total"] == 0


def test_no_ack_consumer_deletes_on_receive(url):
    with connect(url) as conn:
        q = conn.SimpleQueue("fire", no_ack=True)
        q.put({"n": 1})
        m = q.get(timeout=10)
        assert m.payload == {"n": 1}
        assert stats(conn, "fire")["total"] == 0
        assert st.extend_lease(m, 10) is False
        q.close()


def test_requeue_and_channel_close_release_immediately(url):
    with connect(url, visibility_timeout=300) as conn:
        q = conn.SimpleQueue("rq")
        q.put({"n": 1})
        m = q.get(timeout=10)
        m.requeue()                                       # reject(requeue=True)
        m2 = q.get(timeout=10)                            # no 300 s wait
        assert m2.payload == {"n": 1} and st.receive_count(m2) == 2
        assert m2.delivery_info["redelivered"] is True
        q.close()
    # closing the connection restored the unacked m2 (released, not copied)
    with connect(url) as conn:
        assert stats(conn, "rq") == {"ready": 1, "in_flight": 0, "total": 1}
        q = conn.SimpleQueue("rq")
        m3 = q.get(timeout=10)
        assert st.receive_count(m3) == 3
        m3.ack()
        q.close()


# -- leases -----------------------------------------------------------------------------------

def test_unacked_message_redelivered_after_lease_expires(url):
    with connect(url, visibility_timeout=1.5) as a, connect(url, visibility_timeout=1.5) as b:
        qa, qb = a.SimpleQueue("jobs"), b.SimpleQueue("jobs")
        qa.put({"n": 7})
        m1 = qa.get(timeout=10)
        if lease_live(m1):
            with pytest.raises(qb.Empty):
                qb.get_nowait()                           # invisible while leased
        m2 = qb.get(timeout=30)                           # after the lease ran out
        assert m2.payload == {"n": 7}
        assert st.receive_count(m2) == 2 and m2.delivery_info["redelivered"] is True
        assert m2.delivery_tag != m1.delivery_tag
        # the late ack of the first delivery must not delete b's lease
        m1.ack()
        assert stats(a, "jobs") == {"ready": 0, "in_flight": 1, "total": 1}
        assert st.extend_lease(m1, 10) is False
        with pytest.raises(st.LeaseLost):
            st.extend_lease(m1, 10, strict=True)
        m2.ack()
        assert stats(a, "jobs")["total"] == 0
        qa.close()
        qb.close()


def test_ack_after_lease_time_but_before_redelivery_still_wins(url):
    with connect(url, visibility_timeout=0.3) as conn:
        q = conn.SimpleQueue("late")
        q.put({"n": 1})
        m = q.get(timeout=10)
        wait_for(lambda: not lease_live(m, margin=-0.05), timeout=10, interval=0.02,
                 what="lease time to pass")
        m.ack()                                           # nobody re-claimed it: delete
        assert stats(conn, "late")["total"] == 0
        q.close()


def test_extend_lease_keeps_message_invisible(url):
    with connect(url, visibility_timeout=1) as a, connect(url, visibility_timeout=1) as b:
        qa, qb = a.SimpleQueue("long"), b.SimpleQueue("long")
        qa.put({"n": 1})
        m = qa.get(timeout=10)
        original_expiry = st.lease_expires_at(m)
        assert st.extend_lease(m, 60) is True
        assert st.lease_expires_at(m) > original_expiry
        wait_for(lambda: time.time() > original_expiry + 0.5, timeout=10, interval=0.02,
                 what="original lease end")
        with pytest.raises(qb.Empty):
            qb.get(timeout=0.5)                           # still ours past the old timeout
        assert stats(b, "long") == {"ready": 0, "in_flight": 1, "total": 1}
        assert a.default_channel.extend_lease(m, 60) is True
        m.ack()
        assert stats(b, "long")["total"] == 0
        assert st.extend_lease(m, 5) is False             # acked: lease gone
        qa.close()
        qb.close()


def test_ack_from_another_thread(url):
    with connect(url) as conn:
        q = conn.SimpleQueue("xthread")
        q.put({"n": 1})
        m = q.get(timeout=10)
        t = threading.Thread(target=m.ack)
        t.start()
        t.join(timeout=30)
        assert not t.is_alive()
        assert stats(conn, "xthread")["total"] == 0
        q.close()


# -- dead letters -------------------------------------------------------------------------------

def test_max_receives_moves_message_to_dlq(url):
    with connect(url, visibility_timeout=0.3, max_receives=2) as conn:
        q = conn.SimpleQueue("jobs")
        q.put({"n": 42, "blob": "x" * 1000}, headers={"trace": "abc"})
        for attempt in (1, 2):                            # received twice, never acked
            m = q.get(timeout=30)
            assert st.receive_count(m) == attempt

        def moved():
            try:
                extra = q.get_nowait()
            except q.Empty:
                extra = None
            assert extra is None, "delivered a 3rd time instead of dead-lettering"
            return stats(conn, "jobs.dlq")["total"] == 1
        wait_for(moved, timeout=30, interval=0.02, what="move to jobs.dlq")
        assert stats(conn, "jobs")["total"] == 0

        dlq = conn.SimpleQueue(st.dlq_name("jobs"))
        d = dlq.get(timeout=10)
        assert d.payload == {"n": 42, "blob": "x" * 1000}
        assert d.headers["trace"] == "abc"
        assert d.headers[st.HEADER_RECEIVE_COUNT] == 2
        info = st.dead_letter_info(d)
        assert info["source_queue"] == "jobs"
        assert info["receive_count"] == 2
        assert info["reason"] == "max_receives"
        assert st.receive_count(d) == 1                   # first receive from the DLQ
        d.ack()
        assert stats(conn, "jobs.dlq")["total"] == 0
        q.close()
        dlq.close()


def test_requeue_counts_towards_max_receives_and_reject_dead_letters(url):
    with connect(url, max_receives=3) as conn:
        q = conn.SimpleQueue("poison")
        q.put({"n": 1})
        for _ in range(3):
            q.get(timeout=10).requeue()
        with pytest.raises(q.Empty):
            q.get(timeout=0.3)
        assert stats(conn, "poison.dlq")["total"] == 1
        q.put({"n": 2})
        q.get(timeout=10).reject()                        # requeue=False -> DLQ
        dlq = conn.SimpleQueue("poison.dlq")
        bodies = {}
        for _ in range(2):
            d = dlq.get(timeout=10)
            bodies[d.payload["n"]] = st.dead_letter_info(d)
            d.ack()
        assert bodies[1]["reason"] == "max_receives" and bodies[1]["receive_count"] == 3
        assert bodies[2]["reason"] == "rejected" and bodies[2]["receive_count"] == 1
        q.close()
        dlq.close()


# -- processes ------------------------------------------------------------------------------------

HOLDER = r"""
import sys, time, kombu
from pipeline import sqlite_transport as st
st.register()
url, queue, vt = sys.argv[1], sys.argv[2], float(sys.argv[3])
with kombu.Connection(url, transport_options={"visibility_timeout": vt,
                                              "polling_interval": 0.02}) as conn:
    q = conn.SimpleQueue(queue)
    m = q.get(timeout=60)
    print("GOT", m.payload["n"], st.receive_count(m), flush=True)
    time.sleep(600)          # never acks: the test SIGKILLs us
"""


def test_sigkilled_consumer_message_redelivered(url):
    with connect(url, visibility_timeout=2) as conn:
        q = conn.SimpleQueue("tasks")
        q.put({"n": 99})
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, url, "tasks", "2"],
                                stdout=subprocess.PIPE, text=True, env=child_env(),
                                cwd=str(REPO))
        try:
            assert readline(proc, 60).split() == ["GOT", "99", "1"]
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            assert proc.returncode == -signal.SIGKILL
        finally:
            kill(proc)
        m = q.get(timeout=60)                             # after the child's lease ran out
        assert m.payload == {"n": 99}
        assert st.receive_count(m) == 2
        m.ack()
        assert stats(conn, "tasks")["total"] == 0
        q.close()


CONSUMER = r"""
import json, os, socket, sys, time, kombu
from pipeline import sqlite_transport as st
st.register()
url, queue, out, ready, go = sys.argv[1:6]
got = []
# synchronous=NORMAL: this test is about exclusivity, not fsync; it keeps
# the test quick when the disk is busy
with kombu.Connection(url, transport_options={"visibility_timeout": 300,
                                              "synchronous": "NORMAL",
                                              "polling_interval": 0.02}) as conn:
    def on_message(body, message):
        got.append(body["i"])
        message.ack()
    q = kombu.Queue(queue, kombu.Exchange(queue, "direct"), routing_key=queue)
    with conn.Consumer(q, callbacks=[on_message], accept=["json"]):
        open(ready, "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(go):
            if time.monotonic() > deadline:
                sys.exit("no go signal")
            time.sleep(0.01)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=0.5)
            except socket.timeout:
                if conn.default_channel.queue_stats(queue)["total"] == 0:
                    break
with open(out, "w") as f:
    json.dump(got, f)
"""


def test_two_processes_consume_disjoint_exactly_once(url, tmp_path):
    total = 2000
    with connect(url, synchronous="NORMAL") as conn:
        producer = conn.Producer(serializer="json")
        for i in range(total):
            producer.publish({"i": i}, routing_key="bulk")
        assert stats(conn, "bulk")["total"] == total
    procs, outs, readies = [], [], []
    go = tmp_path / "go"
    try:
        for k in range(2):
            out, ready = tmp_path / f"out{k}.json", tmp_path / f"ready{k}"
            outs.append(out)
            readies.append(ready)
            procs.append(subprocess.Popen(
                [sys.executable, "-c", CONSUMER, url, "bulk", str(out), str(ready), str(go)],
                env=child_env(), cwd=str(REPO)))
        wait_for(lambda: all(r.exists() for r in readies), timeout=60, interval=0.02, what="consumers ready")
        go.touch()
        for p in procs:
            assert p.wait(timeout=200) == 0
    finally:
        for p in procs:
            kill(p)
    sets = []
    for out in outs:
        got = json.loads(out.read_text())
        assert len(got) == len(set(got)), "a process got the same message twice"
        sets.append(set(got))
    assert sets[0] and sets[1], "both processes should have consumed"
    assert not (sets[0] & sets[1]), "the same message went to both processes"
    assert sets[0] | sets[1] == set(range(total))
    with connect(url) as conn:
        assert stats(conn, "bulk")["total"] == 0


def test_threads_with_own_connections_share_the_file(url):
    total, nthreads = 600, 3
    with connect(url, synchronous="NORMAL") as conn:
        producer = conn.Producer(serializer="json")
        for i in range(total):
            producer.publish({"i": i}, routing_key="threads")
    results = [[] for _ in range(nthreads)]
    errors = []

    def work(k):
        try:
            with connect(url, synchronous="NORMAL") as c:
                q = c.SimpleQueue("threads")
                deadline = time.monotonic() + 100
                while time.monotonic() < deadline:
                    try:
                        m = q.get(timeout=1)
                    except q.Empty:
                        if stats(c, "threads")["total"] == 0:
                            break
                        continue
                    results[k].append(m.payload["i"])
                    m.ack()
                q.close()
        except BaseException as exc:                      # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert not errors
    flat = [i for r in results for i in r]
    assert sorted(flat) == list(range(total))


def _fork_child(url, parent_conn, results):
    try:
        # the inherited Connection must open its own SQLite connection
        before = parent_conn.default_channel.queue_stats("forked")
        with connect(url) as c:
            q = c.SimpleQueue("forked")
            m = q.get(timeout=30)
            m.ack()
            q.close()
        results.put(("ok", before["total"], m.payload["n"]))
    except BaseException as exc:                          # pragma: no cover
        results.put(("error", repr(exc), None))


def test_forked_child_does_not_reuse_parent_sqlite_connection(url):
    ctx = multiprocessing.get_context("fork")
    with connect(url) as conn:
        q = conn.SimpleQueue("forked")
        q.put({"n": 1})
        q.put({"n": 2})
        parent_sqlite = conn.default_channel._store.conn()
        results = ctx.Queue()
        proc = ctx.Process(target=_fork_child, args=(url, conn, results))
        proc.start()
        try:
            outcome = results.get(timeout=60)
        finally:
            proc.join(timeout=60)
            if proc.is_alive():                           # pragma: no cover
                proc.kill()
                proc.join(timeout=30)
        results.close()
        results.join_thread()
        assert outcome == ("ok", 2, 1)
        assert proc.exitcode == 0
        assert conn.default_channel._store.conn() is parent_sqlite
        m = q.get(timeout=10)
        assert m.payload == {"n": 2}
        m.ack()
        assert stats(conn, "forked")["total"] == 0
        q.close()
