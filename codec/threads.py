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


class Pending:
    """A call made once, by whoever comes to it first: a side job that a kernel's
    threads run beside their tiles (``lossless.model_tiles``' ``side``), or else
    the caller, when it asks for the ``result``.  Calling it never raises: an
    error is kept for ``result``."""

    def __init__(self, function, *args):
        self._call = function, args
        self._done = False
        self._value = self._error = None

    def __call__(self) -> None:
        if self._done:
            return
        self._done = True
        function, args = self._call
        try:
            self._value = function(*args)
        except BaseException as error:      # for the caller, on its own thread
            self._error = error

    def result(self):
        self()
        if self._error is not None:
            raise self._error
        return self._value


class Later:
    """An executor for work that can wait for a side job: ``map`` runs in the
    caller's thread; ``submit`` gives a ``Pending``, run by ``run_all`` (or by
    whoever asks for its result first)."""
    threads = 1

    def __init__(self):
        self.jobs = []

    map = staticmethod(Inline.map)

    def submit(self, function, *args) -> Pending:
        job = Pending(function, *args)
        self.jobs.append(job)
        return job

    def run_all(self) -> None:
        for job in self.jobs:
            job()


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
