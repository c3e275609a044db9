"""The executors the codec runs its tiles and bands on.

With one thread the work runs inline: no pool, no hand-offs, the same results
in the same order.  Pools are kept for the life of the process, so a small
file does not pay for starting threads each time it is coded.
"""
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

_pools: dict[int, ThreadPoolExecutor] = {}
_lock = threading.Lock()


class Inline:
    """An executor that runs each call in the caller's thread."""

    @staticmethod
    def map(function, *iterables):
        return map(function, *iterables)

    @staticmethod
    def submit(function, *args) -> Future:
        future = Future()
        future.set_result(function(*args))
        return future


def _shared(threads: int) -> ThreadPoolExecutor:
    with _lock:
        pool = _pools.get(threads)
        if pool is None:
            pool = _pools[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="codec")
        return pool


@contextmanager
def pool_of(threads: int):
    yield Inline() if threads <= 1 else _shared(threads)


def workers(pool) -> int:
    """How many threads ``pool`` (from ``pool_of``) runs its work on."""
    return getattr(pool, "_max_workers", 1)


def runs(count: int, pieces: int) -> list[tuple[int, int]]:
    """``count`` items cut into at most ``pieces`` runs as even as can be, as (start, length)."""
    pieces = max(1, min(pieces, count))
    edges = [count * i // pieces for i in range(pieces + 1)]
    return [(start, end - start) for start, end in zip(edges, edges[1:])]
