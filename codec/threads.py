"""The executor the codec runs its tiles and bands on.

With one thread the work runs inline: no pool to start, no hand-offs, the
same results in the same order.
"""
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager


class Inline:
    """An executor that runs each call in the caller's thread."""

    @staticmethod
    def map(function, *iterables):
        return map(function, *iterables)


@contextmanager
def pool_of(threads: int):
    if threads <= 1:
        yield Inline()
        return
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="codec") as pool:
        yield pool
