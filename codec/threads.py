"""Side jobs, and the executors the codec's Python-level steps take them from.

The codec's parallel work is inside its kernels: each pass over a raster's
tiles or bands is one call that runs them on OpenMP threads (see
``lossless.model_tiles``), which wait for work spinning.  A pool of Python
threads did it before, and its helpers slept between a raster's few steps:
waking one took 40-90 us on a small cloud machine, a third of a small
image's time.  What is left here is the work that can go beside the tiles:
a ``Pending`` call (the file's checksum, a palette's packing) that one of
the kernel's threads runs when it starts, or else whoever asks for it.
"""
from concurrent.futures import Future


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


def runs(count: int, pieces: int) -> list[tuple[int, int]]:
    """``count`` items cut into at most ``pieces`` runs as even as can be, as (start, length)."""
    pieces = max(1, min(pieces, count))
    edges = [count * i // pieces for i in range(pieces + 1)]
    return [(start, end - start) for start, end in zip(edges, edges[1:])]
