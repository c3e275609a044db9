"""The executors the codec runs its tiles and bands on.

With one thread the work runs inline: no pool, no hand-offs, the same results
in the same order.  With more, the caller works through each ``map`` with
helper threads from a pool kept for the life of the process, so a small file
does not pay for starting threads each time it is coded.
"""
import itertools
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

_pools: dict[int, ThreadPoolExecutor] = {}
_lock = threading.Lock()


class Inline:
    """An executor that runs each call in the caller's thread."""
    threads = 1

    @staticmethod
    def map(function, *iterables):
        return map(function, *iterables)

    @staticmethod
    def submit(function, *args) -> Future:
        future = Future()
        future.set_result(function(*args))
        return future


class Shared:
    """``threads`` threads: the caller's and ``threads - 1`` helpers.  The
    caller takes items of a ``map`` with the helpers instead of waiting for
    them: a map's first item starts with no hand-off, and a helper still
    waking up (or busy with a ``submit``) holds no one up for long."""

    def __init__(self, threads: int):
        self.threads = threads
        self._helpers = _shared(threads - 1)

    def submit(self, function, *args) -> Future:
        return self._helpers.submit(function, *args)

    def map(self, function, iterable) -> list:
        """``function`` of each item, in order, once every call has returned."""
        items = list(iterable)
        results = [None] * len(items)
        claim = itertools.count()       # next() on it is atomic under the GIL

        def drain() -> None:
            while (i := next(claim)) < len(items):
                results[i] = function(items[i])

        helpers = [self._helpers.submit(drain) for _ in range(min(self.threads, len(items)) - 1)]
        try:
            drain()
        finally:
            for helper in helpers:
                if not helper.cancel():     # one that has not started has nothing left to take
                    helper.result()
        return results


class PerThread:
    """An accumulator per thread that works on a ``map``, made by ``make`` on
    its first use there: threads adding into one shared array fight over its
    cache lines, and adding up after the map is serial."""

    def __init__(self, make):
        self._make = make
        self._own = {}

    def mine(self):
        """The calling thread's accumulator."""
        own = self._own.get(threading.get_ident())
        if own is None:
            own = self._own[threading.get_ident()] = self._make()
        return own

    def all(self) -> list:
        return list(self._own.values())


def _shared(threads: int) -> ThreadPoolExecutor:
    with _lock:
        pool = _pools.get(threads)
        if pool is None:
            pool = _pools[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="codec")
        return pool


@contextmanager
def pool_of(threads: int):
    yield Inline() if threads <= 1 else Shared(threads)


def workers(pool) -> int:
    """How many threads ``pool`` (from ``pool_of``) runs its work on."""
    return pool.threads


def runs(count: int, pieces: int) -> list[tuple[int, int]]:
    """``count`` items cut into at most ``pieces`` runs as even as can be, as (start, length)."""
    pieces = max(1, min(pieces, count))
    edges = [count * i // pieces for i in range(pieces + 1)]
    return [(start, end - start) for start, end in zip(edges, edges[1:])]
