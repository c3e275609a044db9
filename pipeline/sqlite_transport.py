"""Durable SQLite-backed kombu transport with SQS-like at-least-once delivery.

This is the on-disk message bus of CloudMover's embedded single-machine mode.
All queues live in one SQLite file shared by any number of processes and
threads on the same machine.

Why not kombu's ``filesystem`` transport?  It deletes a message the moment it
is received, so a worker that is SIGKILLed mid-task loses it.  Here a receive
only *leases* the message (like an SQS receive with a visibility timeout); the
row is deleted when the message is acked.  If the lease runs out first, the
message becomes visible again and is redelivered.

Usage
=====
::

    from pipeline import sqlite_transport
    sqlite_transport.register()          # once per process, before Connection()
    conn = kombu.Connection('sqlite-queue:///var/lib/cloudmover/queue.db',
                            transport_options={'visibility_timeout': 300})

URL: ``sqlite-queue://`` followed by an **absolute** path.  Three slashes is
the canonical form (``sqlite-queue:///tmp/x.db`` -> ``/tmp/x.db``, like a
``file://`` URL).  The SQLAlchemy-style four slashes
(``sqlite-queue:////tmp/x.db``) means the same file.  Relative paths are not
supported: ``sqlite-queue://rel/x.db`` is rejected (``rel`` would be a host
name), because processes with different working directories would silently
use different files.  ``sqlite-queue://localhost/tmp/x.db`` is accepted.
Percent-escapes are decoded (``%20``); ``;``, ``?`` and ``#`` in a path must be
percent-encoded (kombu splits URLs on ``;`` for fail-over), and a query string
is rejected (configure through ``transport_options``).  The parent directory
must exist.  ``Connection(transport='sqlite-queue', hostname='/abs/x.db')``
also works.

Transport options (``transport_options``); any other key raises
:class:`TransportOptionError` when the transport is created (the kombu
``Connection`` retry keys ``max_retries``, ``interval_start``,
``interval_step``, ``interval_max``, ``connect_retries_timeout``, ``errback``
and ``callback`` are consumed by kombu itself and therefore allowed):

``visibility_timeout`` (float seconds > 0, default 60)
    Lease length.  An unacked message is redelivered this long after it was
    received (or after the last :func:`extend_lease`).
``max_receives`` (int >= 1, default 5)
    Redrive policy: a message that was already received this many times and
    comes up again is moved to ``<queue>.dlq`` instead of being delivered.
``polling_interval`` (float seconds > 0, default 0.1)
    Sleep between empty polls in ``drain_events``.  Empty polls are a cheap
    read that takes no lock.
``busy_timeout`` (float seconds > 0, default 30)
    How long a statement waits for SQLite's write lock before raising
    ``sqlite3.OperationalError`` (listed in ``Transport.connection_errors``).
``synchronous`` (``'FULL'`` default, ``'NORMAL'`` or ``'EXTRA'``)
    SQLite ``PRAGMA synchronous``.  ``FULL`` survives power loss; ``NORMAL``
    survives process crashes (SIGKILL) only but avoids one fsync per commit.

Delivery semantics
==================
* ``_get`` claims, in one ``BEGIN IMMEDIATE`` transaction, the queue's visible
  row with the smallest ``visible_at`` (ties: oldest id): it sets
  ``visible_at = now + visibility_timeout``, increments ``receive_count`` and
  stores a fresh random *lease token*.  New messages come in publish order; a
  message whose lease expired re-enters the order at its expiry time; a
  requeued message goes back to its original position.  No priorities.
* The delivery tag is ``"sqlite-queue:<row id>:<lease token>"`` (like SQS,
  whose delivery tag is the receipt handle); the same values are also in
  ``message.delivery_info['sqlite_queue']`` (``id``, ``lease``, ``queue``,
  ``receive_count``, ``lease_expires_at``, ``pid`` of the receiver).
  ``delivery_info['redelivered']`` is true when ``receive_count > 1``.
* **Ack rule**: ack deletes the row only if its lease token is still the one
  of this delivery, i.e. nobody has received the message since.  That is the
  case even if the lease time has passed but no other consumer has claimed it
  yet (then the ack still wins and the message is not redelivered).  If
  another consumer has claimed it, the late ack is ignored (logged as a
  warning) and the other holder processes it again: at-least-once, never a
  deletion of someone else's lease.
* ``reject(requeue=True)`` (and restoring unacked messages when a channel is
  closed) releases the lease: the message is visible again immediately.  The
  receive counted, so a message requeued over and over is still dead-lettered
  after ``max_receives``.
* ``reject(requeue=False)`` moves the message to ``<queue>.dlq``.  For a
  queue whose own name ends in ``.dlq`` it deletes it instead.
* ``no_ack`` consumers (``Consumer(no_ack=True)``, ``basic_get(no_ack=True)``)
  delete the row when they receive it: at-most-once, as asked.
* Dead-lettered messages keep their body, properties and headers; these
  headers are added (see :func:`dead_letter_info`):
  ``x-receive-count`` (times received from the source queue),
  ``x-dead-letter-source`` (source queue), ``x-dead-letter-reason``
  (``'max_receives'`` or ``'rejected'``), ``x-dead-lettered-at`` (epoch s).
  ``<queue>.dlq`` is an ordinary queue; queues whose name ends in ``.dlq``
  have no redrive policy (their messages are redelivered indefinitely).
  The move happens when a consumer polls the source queue and meets the
  message, so ``_size``/``qsize`` of the source may count it until then.
* ``extend_lease(message, seconds, *, strict=False) -> bool`` (module level,
  or :meth:`Channel.extend_lease`) is SQS's ChangeMessageVisibility: the
  message stays invisible until ``now + seconds``.  It returns False (with
  ``strict=True``: raises :class:`LeaseLost`) if the message has been acked,
  rejected, or received by another consumer since.  Extending is allowed
  even after the lease time has passed as long as nobody else received the
  message in between.

Caveats
=======
* Times are wall-clock (``time.time()``) because they are shared between
  processes and must survive restarts; stepping the clock back by N seconds
  lengthens live leases by N seconds.
* Exchanges and bindings are kept in memory per ``Connection`` like every
  kombu virtual transport: routing through a named exchange needs the
  publisher to have declared the binding (``SimpleQueue``, ``Producer`` with
  ``declare=[queue]`` and Celery all do).  Publishing with the queue name as
  routing key to the default exchange always works.  No fanout.
* A consumer that holds messages longer than ``visibility_timeout`` (including
  prefetched ones and Celery ETA/countdown tasks) will see them redelivered
  unless it extends the lease.
* Several ``SimpleQueue``/``Consumer`` objects on one ``Connection`` share
  its default channel, and ``drain_events`` (which ``SimpleQueue.get`` calls)
  serves all of them: waiting on queue A also receives -- and so leases --
  messages of queue B into B's buffer.  They are not lost (redelivered after
  the lease, or released when the channel closes), but they wait there.
  Use one connection (or channel) per consumed queue to avoid that.
* ``_size``/``qsize()``/``queue_declare`` count *ready* messages only (like
  AMQP); :meth:`Channel.queue_stats` gives ``ready``/``in_flight``/``total``.
  ``queue_purge`` deletes ready messages only; ``queue_delete`` deletes the
  queue with all its messages, leased ones included.
* The database file does not shrink when queues drain (free pages are
  reused).
* Closing a ``Connection`` while other threads still use it is not supported.
* Connections inherited through ``fork()`` are never used or closed in the
  child (SQLite forbids it); the child opens its own.
"""

from __future__ import annotations

import difflib
import math
import os
import random
import sqlite3
import threading
import time
import uuid
import weakref
from collections import namedtuple
from contextlib import contextmanager
from dataclasses import dataclass
from queue import Empty
from urllib.parse import unquote

import pipeline.kombu_loading  # noqa: F401  (before kombu: loads it without PyYAML)
from kombu.exceptions import KombuError
from kombu.log import get_logger
from kombu.transport import virtual
from kombu.utils.json import dumps, loads

__all__ = (
    'SCHEME', 'DLQ_SUFFIX', 'register', 'Transport', 'Channel',
    'TransportOptionError', 'LeaseLost', 'extend_lease', 'lease_expires_at',
    'receive_count',
    'dead_letter_info', 'dlq_name', 'path_from_url',
    'HEADER_RECEIVE_COUNT', 'HEADER_DEAD_LETTER_SOURCE',
    'HEADER_DEAD_LETTER_REASON', 'HEADER_DEAD_LETTERED_AT',
)

logger = get_logger(__name__)

#: URL scheme / kombu transport alias installed by :func:`register`.
SCHEME = 'sqlite-queue'
DLQ_SUFFIX = '.dlq'

HEADER_RECEIVE_COUNT = 'x-receive-count'
HEADER_DEAD_LETTER_SOURCE = 'x-dead-letter-source'
HEADER_DEAD_LETTER_REASON = 'x-dead-letter-reason'
HEADER_DEAD_LETTERED_AT = 'x-dead-lettered-at'

#: key of our lease data in ``message.delivery_info``
DELIVERY_INFO_KEY = 'sqlite_queue'

_TAG_PREFIX = SCHEME + ':'
_SCHEMA_VERSION = 1
#: at most this many redrive moves per claim transaction (keeps it short)
_MAX_MOVES_PER_TXN = 32
#: Waiting for the write lock is done here rather than by SQLite's busy
#: handler, whose sleeps grow to 100 ms: a process polling that slowly almost
#: never gets the lock while another process claims and acks in a tight loop
#: (observed: 23 vs 1977 messages).  Short jittered sleeps keep it fair.
_SQLITE_BUSY_MS = 1
_BUSY_SLEEP_MIN = 0.0002
_BUSY_SLEEP_MAX = 0.004


class TransportOptionError(ValueError):
    """Unknown or invalid ``transport_options`` / URL for this transport."""


class LeaseLost(KombuError):
    """The message's lease is no longer held by this delivery.

    Raised by :func:`extend_lease` with ``strict=True``: the message was
    acked or rejected, or its lease expired and another consumer received it.
    """


def register(alias: str = SCHEME) -> str:
    """Make ``kombu.Connection('<alias>:///abs/path.db')`` use this transport.

    Idempotent; call it in every process before creating the ``Connection``
    (it is not done at import time).  Returns the alias.
    """
    from kombu.transport import TRANSPORT_ALIASES
    TRANSPORT_ALIASES[alias] = f'{__name__}:Transport'
    return alias


def dlq_name(queue: str) -> str:
    """Name of the dead-letter queue of ``queue``."""
    return queue + DLQ_SUFFIX


def _is_dlq(queue: str) -> bool:
    return queue.endswith(DLQ_SUFFIX)


def path_from_url(url: str) -> str:
    """Return the absolute database path of a ``sqlite-queue://`` URL.

    See the module docstring for the accepted forms.
    """
    if not isinstance(url, str) or not url:
        raise TransportOptionError(
            f'{SCHEME}: no database path given (use {SCHEME}:///abs/path.db)')
    if '://' not in url:
        rest = url                       # bare path passed as hostname
    else:
        rest = url.split('://', 1)[1]
        if rest.startswith('localhost/'):
            rest = rest[len('localhost'):]
    if '?' in rest or '#' in rest:
        raise TransportOptionError(
            f'{SCHEME}: query strings/fragments are not supported in {url!r}; '
            'pass settings in transport_options and percent-encode ? and # '
            'in paths')
    if not rest.startswith('/'):
        raise TransportOptionError(
            f'{SCHEME}: the database path must be absolute, got {url!r}; '
            f'use {SCHEME}:///abs/path/queue.db')
    path = os.path.normpath('/' + unquote(rest).lstrip('/'))
    if path == '/':
        raise TransportOptionError(f'{SCHEME}: no database path in {url!r}')
    return path


# --------------------------------------------------------------------------
# transport options

@dataclass(frozen=True)
class Options:
    visibility_timeout: float = 60.0
    max_receives: int = 5
    polling_interval: float = 0.1
    busy_timeout: float = 30.0
    synchronous: str = 'FULL'


#: keys kombu.Connection itself reads from transport_options (failover/retry)
_KOMBU_CONNECTION_KEYS = frozenset({
    'max_retries', 'interval_start', 'interval_step', 'interval_max',
    'connect_retries_timeout', 'errback', 'callback',
})
_OPTION_NAMES = ('visibility_timeout', 'max_receives', 'polling_interval',
                 'busy_timeout', 'synchronous')
_SYNCHRONOUS = ('FULL', 'NORMAL', 'EXTRA')
#: numeric options: name -> (integer only, minimum, minimum allowed)
_NUMERIC_OPTIONS = {
    'visibility_timeout': (False, 0, False),
    'max_receives': (True, 1, True),
    'polling_interval': (False, 0, False),
    'busy_timeout': (False, 0, False),
}


def _number(name, value, *, integer=False, minimum, inclusive):
    if isinstance(value, bool):
        raise TransportOptionError(f'{SCHEME}: {name} must be a number, '
                                   f'got {value!r}')
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise TransportOptionError(
                f'{SCHEME}: {name} must be a number, got {value!r}') from None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TransportOptionError(f'{SCHEME}: {name} must be a finite '
                                   f'number, got {value!r}')
    if integer:
        if value != int(value):
            raise TransportOptionError(f'{SCHEME}: {name} must be an '
                                       f'integer, got {value!r}')
        value = int(value)
    ok = value >= minimum if inclusive else value > minimum
    if not ok:
        raise TransportOptionError(
            f'{SCHEME}: {name} must be {">=" if inclusive else ">"} '
            f'{minimum}, got {value!r}')
    return value if integer else float(value)


def parse_options(transport_options) -> Options:
    """Validate ``transport_options``; raise :class:`TransportOptionError`."""
    topts = dict(transport_options or {})
    unknown = sorted(k for k in topts
                     if k not in _OPTION_NAMES
                     and k not in _KOMBU_CONNECTION_KEYS)
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), _OPTION_NAMES, 1)
            hints.append(f'{key!r}' + (f' (did you mean {close[0]!r}?)'
                                       if close else ''))
        raise TransportOptionError(
            f'{SCHEME}: unknown transport option(s): {", ".join(hints)}; '
            f'valid options: {", ".join(_OPTION_NAMES)}')
    kw = {}
    for name, (integer, minimum, inclusive) in _NUMERIC_OPTIONS.items():
        if topts.get(name) is not None:
            kw[name] = _number(name, topts[name], integer=integer,
                               minimum=minimum, inclusive=inclusive)
    if topts.get('synchronous') is not None:
        sync = str(topts['synchronous']).strip().upper()
        if sync not in _SYNCHRONOUS:
            raise TransportOptionError(
                f'{SCHEME}: synchronous must be one of {_SYNCHRONOUS}, '
                f'got {topts["synchronous"]!r}')
        kw['synchronous'] = sync
    return Options(**kw)


# --------------------------------------------------------------------------
# SQLite connection bookkeeping (one connection per thread, fork-aware)

class _Holder:
    """One sqlite3 connection, the thread/process that opened it, its owner."""

    __slots__ = ('conn', 'pid', 'thread', 'owner', '__weakref__')

    def __init__(self, conn, owner):
        self.conn = conn
        self.pid = os.getpid()
        self.thread = weakref.ref(threading.current_thread())
        self.owner = owner


# Every connection this module opened and has not closed.  Module-level and
# strongly referenced on purpose: a connection must only ever be closed
# explicitly in the process that opened it, never by garbage collection in a
# forked child (SQLite forbids using a connection across fork()).
_registry_lock = threading.Lock()
_open_holders: list = []
#: connections inherited through fork(): kept alive, never touched
_inherited: list = []
_fork_hook_installed = False


def _after_fork_in_child():
    global _registry_lock
    _registry_lock = threading.Lock()
    _inherited.extend(_open_holders)
    _open_holders.clear()


def _install_fork_hook():
    global _fork_hook_installed
    if not _fork_hook_installed and hasattr(os, 'register_at_fork'):
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _fork_hook_installed = True


def _is_busy(exc):
    code = getattr(exc, 'sqlite_errorcode', None)     # Python >= 3.11
    if code is not None:
        return code & 0xff in (5, 6)                   # SQLITE_BUSY, _LOCKED
    return 'locked' in str(exc) or 'busy' in str(exc)


def _close_quietly(holder):
    conn, holder.conn = holder.conn, None
    if conn is not None:
        try:
            conn.close()
        except Exception:  # pragma: no cover
            pass


def _sweep_locked():
    """Close connections of threads that have exited (same process only)."""
    pid = os.getpid()
    keep = []
    for h in _open_holders:
        if h.pid != pid:
            _inherited.append(h)
            continue
        t = h.thread()
        if t is None or not t.is_alive():
            _close_quietly(h)
        else:
            keep.append(h)
    _open_holders[:] = keep


def _close_owned(owner):
    pid = os.getpid()
    with _registry_lock:
        mine = [h for h in _open_holders if h.owner is owner and h.pid == pid]
        _open_holders[:] = [h for h in _open_holders
                            if not (h.owner is owner and h.pid == pid)]
    for h in mine:
        _close_quietly(h)


Claimed = namedtuple('Claimed', 'id token receive_count payload expires_at')

_SCHEMA = (
    '''CREATE TABLE IF NOT EXISTS sq_messages (
           id            INTEGER PRIMARY KEY AUTOINCREMENT,
           queue         TEXT    NOT NULL,
           visible_at    REAL    NOT NULL,
           enqueued_at   REAL    NOT NULL,
           receive_count INTEGER NOT NULL DEFAULT 0,
           lease_token   TEXT,
           payload       TEXT    NOT NULL)''',
    # (queue, visible_at, rowid): the claim is one index seek
    '''CREATE INDEX IF NOT EXISTS sq_messages_visible
           ON sq_messages (queue, visible_at)''',
    '''CREATE TABLE IF NOT EXISTS sq_queues (
           name       TEXT PRIMARY KEY,
           created_at REAL NOT NULL) WITHOUT ROWID''',
)

_SQL_ANY_VISIBLE = ('SELECT 1 FROM sq_messages WHERE queue = ? '
                    'AND visible_at <= ? LIMIT 1')
_SQL_HEAD = ('SELECT id, receive_count, payload FROM sq_messages '
             'WHERE queue = ? AND visible_at <= ? '
             'ORDER BY visible_at, id LIMIT 1')


class _Store:
    """All SQL of the transport.  Thread-safe; one connection per thread."""

    def __init__(self, path, busy_timeout=30.0, synchronous='FULL'):
        self.path = path
        self.busy_timeout = busy_timeout
        self.synchronous = synchronous
        self._local = threading.local()
        self._owner = object()
        self._schema_ready = False
        _install_fork_hook()
        weakref.finalize(self, _close_owned, self._owner)

    # -- connections ------------------------------------------------------
    def conn(self) -> sqlite3.Connection:
        h = getattr(self._local, 'holder', None)
        if h is not None and h.conn is not None and h.pid == os.getpid():
            return h.conn
        conn = self._connect()
        h = _Holder(conn, self._owner)
        with _registry_lock:
            _sweep_locked()
            _open_holders.append(h)
        self._local.holder = h
        return conn

    def _connect(self):
        try:
            conn = sqlite3.connect(
                self.path, timeout=_SQLITE_BUSY_MS / 1000, isolation_level=None,
                check_same_thread=False)
        except sqlite3.OperationalError as exc:
            raise sqlite3.OperationalError(
                f'{SCHEME}: cannot open queue database {self.path!r}: '
                f'{exc}') from exc
        try:
            conn.execute(f'PRAGMA busy_timeout = {_SQLITE_BUSY_MS}')
            self._ensure_wal(conn)
            conn.execute(f'PRAGMA synchronous = {self.synchronous}')
            if not self._schema_ready:
                self._ensure_schema(conn)
                self._schema_ready = True
        except BaseException:
            conn.close()
            raise
        return conn

    def _ensure_wal(self, conn):
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                mode = conn.execute('PRAGMA journal_mode').fetchone()[0]
                if mode.lower() != 'wal':
                    mode = conn.execute(
                        'PRAGMA journal_mode = WAL').fetchone()[0]
            except sqlite3.OperationalError as exc:
                # switching to WAL needs an exclusive lock; another process
                # may be creating the database at the same moment
                if not _is_busy(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(0.001, 0.01))
                continue
            if mode.lower() != 'wal':
                raise sqlite3.OperationalError(
                    f'{SCHEME}: cannot enable WAL mode on {self.path!r} '
                    f'(journal_mode is {mode!r}); is it on a network '
                    'filesystem?')
            return

    def _ensure_schema(self, conn):
        with self._txn(conn):
            version = conn.execute('PRAGMA user_version').fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise sqlite3.OperationalError(
                    f'{SCHEME}: {self.path!r} has schema version {version}, '
                    f'this code supports {_SCHEMA_VERSION}')
            for stmt in _SCHEMA:
                conn.execute(stmt)
            if version < _SCHEMA_VERSION:
                conn.execute(f'PRAGMA user_version = {_SCHEMA_VERSION}')

    @contextmanager
    def _txn(self, conn=None):
        """Short write transaction (``BEGIN IMMEDIATE`` takes the lock now)."""
        conn = conn if conn is not None else self.conn()
        self._retry(conn.execute, 'BEGIN IMMEDIATE')
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute('ROLLBACK')
            raise
        else:
            conn.execute('COMMIT')

    def _retry(self, fn, *args):
        """``fn(*args)``, retried while the database is locked."""
        delay = _BUSY_SLEEP_MIN
        deadline = None
        while True:
            try:
                return fn(*args)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.busy_timeout
                elif now >= deadline:
                    raise
                time.sleep(random.uniform(delay / 2, delay))
                delay = min(delay * 2, _BUSY_SLEEP_MAX)

    def _exec(self, sql, params=()):
        """One autocommit statement on this thread's connection."""
        return self._retry(self.conn().execute, sql, params)

    def close(self):
        """Close this store's connections (of all threads, this process)."""
        _close_owned(self._owner)

    # -- operations -------------------------------------------------------
    def put(self, queue, payload_text):
        now = time.time()
        self._exec(
            'INSERT INTO sq_messages (queue, visible_at, enqueued_at, '
            'payload) VALUES (?, ?, ?, ?)', (queue, now, now, payload_text))

    def claim(self, queue, visibility_timeout, max_receives, delete=False):
        """Lease (or with ``delete``, remove) the head visible message.

        Returns :class:`Claimed` or None.  ``max_receives=None`` disables the
        redrive policy.
        """
        # lock-free read first: idle pollers never queue for the write lock
        if self._exec(_SQL_ANY_VISIBLE, (queue, time.time())).fetchone() \
                is None:
            return None
        conn = self.conn()
        while True:
            moved = 0
            result = None
            with self._txn(conn):
                now = time.time()
                while True:
                    row = conn.execute(_SQL_HEAD, (queue, now)).fetchone()
                    if row is None:
                        break
                    rid, count, payload = row
                    if max_receives is not None and count >= max_receives:
                        self._dead_letter_locked(conn, rid, queue, payload,
                                                 count, 'max_receives', now)
                        moved += 1
                        if moved >= _MAX_MOVES_PER_TXN:
                            break
                        continue
                    if delete:
                        conn.execute('DELETE FROM sq_messages WHERE id = ?',
                                     (rid,))
                        result = Claimed(rid, None, count + 1, payload, None)
                    else:
                        token = uuid.uuid4().hex
                        expires = now + visibility_timeout
                        conn.execute(
                            'UPDATE sq_messages SET visible_at = ?, '
                            'receive_count = receive_count + 1, '
                            'lease_token = ? WHERE id = ?',
                            (expires, token, rid))
                        result = Claimed(rid, token, count + 1, payload,
                                         expires)
                    break
            if result is not None or moved < _MAX_MOVES_PER_TXN:
                return result

    def _dead_letter_locked(self, conn, rid, queue, payload_text, count,
                            reason, now):
        payload = loads(payload_text)
        headers = payload.get('headers')
        if not isinstance(headers, dict):
            headers = payload['headers'] = {}
        headers[HEADER_RECEIVE_COUNT] = count
        headers[HEADER_DEAD_LETTER_SOURCE] = queue
        headers[HEADER_DEAD_LETTER_REASON] = reason
        headers[HEADER_DEAD_LETTERED_AT] = now
        dlq = dlq_name(queue)
        conn.execute('INSERT OR IGNORE INTO sq_queues (name, created_at) '
                     'VALUES (?, ?)', (dlq, now))
        conn.execute(
            'UPDATE sq_messages SET queue = ?, payload = ?, visible_at = ?, '
            'enqueued_at = ?, receive_count = 0, lease_token = NULL '
            'WHERE id = ?', (dlq, dumps(payload), now, now, rid))
        logger.warning('%s: moved message %s from %r to %r (%s, received '
                       '%d times)', SCHEME, rid, queue, dlq, reason, count)

    def ack(self, rid, token) -> bool:
        cur = self._exec(
            'DELETE FROM sq_messages WHERE id = ? AND lease_token = ?',
            (rid, token))
        return cur.rowcount == 1

    def release(self, rid, token) -> bool:
        cur = self._exec(
            'UPDATE sq_messages SET visible_at = MIN(enqueued_at, ?), '
            'lease_token = NULL WHERE id = ? AND lease_token = ?',
            (time.time(), rid, token))
        return cur.rowcount == 1

    def extend(self, rid, token, seconds):
        expires = time.time() + seconds
        cur = self._exec(
            'UPDATE sq_messages SET visible_at = ? '
            'WHERE id = ? AND lease_token = ?', (expires, rid, token))
        return expires if cur.rowcount == 1 else None

    def dead_letter(self, rid, token, reason) -> bool:
        """Move a leased message to its queue's DLQ (delete if in a DLQ)."""
        with self._txn() as conn:
            row = conn.execute(
                'SELECT queue, receive_count, payload FROM sq_messages '
                'WHERE id = ? AND lease_token = ?', (rid, token)).fetchone()
            if row is None:
                return False
            queue, count, payload = row
            if _is_dlq(queue):
                conn.execute('DELETE FROM sq_messages WHERE id = ?', (rid,))
            else:
                self._dead_letter_locked(conn, rid, queue, payload, count,
                                         reason, time.time())
            return True

    def stats(self, queue):
        now = time.time()
        ready, total = self._exec(
            'SELECT COALESCE(SUM(visible_at <= ?), 0), COUNT(*) '
            'FROM sq_messages WHERE queue = ?', (now, queue)).fetchone()
        return {'ready': ready, 'in_flight': total - ready, 'total': total}

    def size(self, queue):
        return self._exec(
            'SELECT COUNT(*) FROM sq_messages WHERE queue = ? '
            'AND visible_at <= ?', (queue, time.time())).fetchone()[0]

    def purge(self, queue):
        return self._exec(
            'DELETE FROM sq_messages WHERE queue = ? AND visible_at <= ?',
            (queue, time.time())).rowcount

    def delete_queue(self, queue):
        with self._txn() as conn:
            n = conn.execute('DELETE FROM sq_messages WHERE queue = ?',
                             (queue,)).rowcount
            conn.execute('DELETE FROM sq_queues WHERE name = ?', (queue,))
        return n

    def new_queue(self, queue):
        self._exec('INSERT OR IGNORE INTO sq_queues (name, created_at) '
                   'VALUES (?, ?)', (queue, time.time()))

    def has_queue(self, queue):
        return (self._exec('SELECT 1 FROM sq_queues WHERE name = ?',
                           (queue,)).fetchone() is not None
                or self._exec('SELECT 1 FROM sq_messages WHERE queue = ? '
                              'LIMIT 1', (queue,)).fetchone() is not None)


# --------------------------------------------------------------------------
# kombu channel / transport

def _parse_tag(delivery_tag):
    """``'sqlite-queue:<id>:<token>'`` -> ``(id, token)``; None if no lease."""
    if not isinstance(delivery_tag, str) or \
            not delivery_tag.startswith(_TAG_PREFIX):
        return None
    try:
        rid, token = delivery_tag[len(_TAG_PREFIX):].split(':', 1)
        rid = int(rid)
    except ValueError:
        return None
    return (rid, token) if token else None


class Channel(virtual.Channel):
    """Virtual channel whose queues are rows of one SQLite database."""

    # no generic virtual-transport options (body_encoding, deadletter_queue):
    # transport_options are validated by parse_options
    from_transport_options = ()
    supports_fanout = False

    def __init__(self, connection, **kwargs):
        super().__init__(connection, **kwargs)
        options = connection.options
        self.visibility_timeout = options.visibility_timeout
        self.max_receives = options.max_receives
        self._store = connection.store
        self._noack_queues = set()

    # -- kombu virtual API ----------------------------------------------
    def _put(self, queue, message, **kwargs):
        self._store.put(queue, dumps(message))

    def _get(self, queue, timeout=None, no_ack=None):
        if no_ack is None:
            no_ack = queue in self._noack_queues
        claimed = self._store.claim(
            queue, self.visibility_timeout,
            None if _is_dlq(queue) else self.max_receives, delete=no_ack)
        if claimed is None:
            raise Empty()
        payload = loads(claimed.payload)
        props = payload.setdefault('properties', {})
        info = props.get('delivery_info')
        if not isinstance(info, dict):
            info = props['delivery_info'] = {}
        info[DELIVERY_INFO_KEY] = {
            'id': claimed.id,
            'lease': claimed.token,
            'queue': queue,
            'receive_count': claimed.receive_count,
            'lease_expires_at': claimed.expires_at,
            'pid': os.getpid(),
        }
        info['redelivered'] = claimed.receive_count > 1
        props['delivery_tag'] = f'{_TAG_PREFIX}{claimed.id}:' \
                                f'{claimed.token or ""}'
        return payload

    def _size(self, queue):
        """Number of messages ready for delivery (leased ones excluded)."""
        return self._store.size(queue)

    def _purge(self, queue):
        """Delete the ready messages (AMQP semantics: leased ones stay)."""
        return self._store.purge(queue)

    def _delete(self, queue, *args, **kwargs):
        """Delete the queue and all its messages, leased ones included."""
        return self._store.delete_queue(queue)

    def _new_queue(self, queue, **kwargs):
        self._store.new_queue(queue)

    def _has_queue(self, queue, **kwargs):
        return self._store.has_queue(queue)

    def queue_delete(self, queue, if_unused=False, if_empty=False, **kwargs):
        # the base class only deletes queues bound in *this* process
        if if_empty and self._size(queue):
            return 0
        n = self._delete(queue)
        self.state.queue_bindings_delete(queue)
        return n

    def basic_consume(self, queue, no_ack, *args, **kwargs):
        if no_ack:
            self._noack_queues.add(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def basic_cancel(self, consumer_tag):
        if consumer_tag in self._consumers:
            self._noack_queues.discard(self._tag_to_queue.get(consumer_tag))
        return super().basic_cancel(consumer_tag)

    def basic_get(self, queue, no_ack=False, **kwargs):
        try:
            message = self.Message(self._get(queue, no_ack=no_ack),
                                   channel=self)
        except Empty:
            return None
        if not no_ack:
            self.qos.append(message, message.delivery_tag)
        return message

    def basic_ack(self, delivery_tag, multiple=False):
        ref = _parse_tag(delivery_tag)
        try:
            if ref is not None and not self._store.ack(*ref):
                logger.warning(
                    '%s: ack of message %s ignored: its lease was lost '
                    '(already acked/rejected, or redelivered to another '
                    'consumer after the visibility timeout)', SCHEME, ref[0])
        finally:
            super().basic_ack(delivery_tag)

    def basic_reject(self, delivery_tag, requeue=False):
        ref = _parse_tag(delivery_tag)
        try:
            if ref is not None:
                if requeue:
                    ok = self._store.release(*ref)
                else:
                    ok = self._store.dead_letter(*ref, reason='rejected')
                if not ok:
                    logger.warning('%s: reject of message %s ignored: its '
                                   'lease was lost', SCHEME, ref[0])
        finally:
            # requeue already done above; only drop it from the QoS state
            super().basic_reject(delivery_tag, requeue=False)

    def _restore(self, message):
        # Unacked messages being restored (channel close, basic_recover):
        # release the lease instead of re-publishing a copy.  Only in the
        # process that received them: kombu's QoS finalizers are inherited
        # by fork() children and must not release the parent's leases.
        info = (message.delivery_info or {}).get(DELIVERY_INFO_KEY) or {}
        if info.get('pid', os.getpid()) != os.getpid():
            return
        ref = _parse_tag(message.delivery_tag)
        if ref is not None:
            self._store.release(*ref)

    # -- extras -----------------------------------------------------------
    def extend_lease(self, message, seconds, *, strict=False) -> bool:
        """Keep ``message`` invisible until ``now + seconds``.

        Like SQS ChangeMessageVisibility: the new lease runs from now, it is
        not added to the old one (``seconds=0`` makes the message visible
        again at once, while this delivery may still ack it until somebody
        else receives it).  Returns True on success and False if this
        delivery no longer holds the message (it was acked or rejected, or
        its lease expired and another consumer received it); with
        ``strict=True`` that case raises :class:`LeaseLost` instead.  The new
        expiry (epoch seconds) is stored in
        ``message.delivery_info['sqlite_queue']['lease_expires_at']``.
        """
        seconds = _number('seconds', seconds, minimum=0, inclusive=True)
        ref = _parse_tag(getattr(message, 'delivery_tag', None))
        expires = None
        if ref is not None:
            expires = self._store.extend(ref[0], ref[1], seconds)
        if expires is None:
            if strict:
                raise LeaseLost(
                    f'{SCHEME}: lease lost for message '
                    f'{ref[0] if ref else getattr(message, "delivery_tag", None)!r}'
                    ' (acked, rejected, redelivered to another consumer, or '
                    'a no_ack delivery)')
            return False
        info = (message.delivery_info or {}).get(DELIVERY_INFO_KEY)
        if isinstance(info, dict):
            info['lease_expires_at'] = expires
        return True

    def queue_stats(self, queue) -> dict:
        """``{'ready': n, 'in_flight': n, 'total': n}`` for ``queue``."""
        return self._store.stats(queue)


class Transport(virtual.Transport):
    """SQLite queue transport (see module docstring)."""

    Channel = Channel

    can_parse_url = True
    polling_interval = Options.polling_interval
    default_port = None
    driver_type = 'sqlite'
    driver_name = 'sqlite3'

    connection_errors = virtual.Transport.connection_errors + (
        sqlite3.OperationalError,)

    implements = virtual.Transport.implements.extend(
        asynchronous=False,
        exchange_type=frozenset(['direct', 'topic']),
        heartbeats=False,
    )

    def __init__(self, client, **kwargs):
        self.options = parse_options(client.transport_options)
        self.path = path_from_url(client.hostname)
        super().__init__(client, **kwargs)
        self.polling_interval = self.options.polling_interval
        self.store = _Store(self.path, self.options.busy_timeout,
                            self.options.synchronous)

    def establish_connection(self):
        self.store.conn()           # fail fast: open/create the database
        return super().establish_connection()

    def close_connection(self, connection):
        try:
            super().close_connection(connection)
        finally:
            self.store.close()

    def driver_version(self):
        return sqlite3.sqlite_version

    def as_uri(self, uri, include_password=False, mask='**'):
        return f'{SCHEME}://{self.path}'

    @property
    def default_connection_params(self):
        return {'port': None, 'hostname': None}


# --------------------------------------------------------------------------
# helpers on kombu Message objects

def extend_lease(message, seconds, *, strict=False) -> bool:
    """Extend the lease of a kombu ``Message`` received through this transport.

    Module-level form of :meth:`Channel.extend_lease`: True if the message now
    stays invisible until ``now + seconds``, False if the lease was lost
    (``strict=True``: raise :class:`LeaseLost`).  ``TypeError`` if the message
    did not come from this transport.
    """
    channel = getattr(message, 'channel', None)
    if not isinstance(channel, Channel):
        raise TypeError(f'{SCHEME}: extend_lease() needs a message received '
                        f'through the {SCHEME} transport')
    return channel.extend_lease(message, seconds, strict=strict)


def lease_expires_at(message):
    """Epoch time at which this delivery's lease ends (None for no_ack)."""
    info = (message.delivery_info or {}).get(DELIVERY_INFO_KEY) or {}
    return info.get('lease_expires_at')


def receive_count(message) -> int:
    """How many times this message has been received (this delivery included).

    For a delivery from a ``.dlq`` queue this counts receives from the DLQ;
    see :func:`dead_letter_info` for the count in the source queue.
    """
    info = (message.delivery_info or {}).get(DELIVERY_INFO_KEY) or {}
    return int(info.get('receive_count') or 0)


def dead_letter_info(message):
    """``None``, or for a dead-lettered message a dict with ``source_queue``,
    ``receive_count`` (receives in the source queue), ``reason``
    (``'max_receives'`` or ``'rejected'``) and ``dead_lettered_at``."""
    headers = getattr(message, 'headers', None) or {}
    if HEADER_DEAD_LETTER_SOURCE not in headers:
        return None
    return {
        'source_queue': headers.get(HEADER_DEAD_LETTER_SOURCE),
        'receive_count': headers.get(HEADER_RECEIVE_COUNT),
        'reason': headers.get(HEADER_DEAD_LETTER_REASON),
        'dead_lettered_at': headers.get(HEADER_DEAD_LETTERED_AT),
    }
