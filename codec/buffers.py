"""Big scratch arrays lent to one encode or decode and kept for the next.

A raster's coded tiles and extra bits (encoding), and a packed layout's samples
(10-bit DPX, both ways), live in arrays of megabytes that one call uses up.
Fresh ones cost a page fault for every 4 KiB written, and most when two threads
fault at once.  In alternating runs of the bench's CloudMover rows (encoding
and decoding in turn, as a worker does), the 16-bit RGB frames encoded at
632-683 MB/s on two threads in kept arrays against 550-562 MB/s in fresh ones,
and at 347-362 against 270-324 MB/s on one.  Arrays given back are kept for any
thread, up to KEPT_BYTES in all (the oldest dropped first), so memory stays
bounded however many threads encode; a thread's small per-raster arrays stay
its own (``rastercoder.reused``).
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import numpy as np

KEPT_BYTES = 128 << 20      # kept arrays in all, for the whole process (three per 6 MB frame in flight)
KEPT_ARRAYS = 16


class Buffers:
    def __init__(self, limit: int = KEPT_BYTES, count: int = KEPT_ARRAYS):
        self.limit, self.count = limit, count
        self._kept: list[np.ndarray] = []       # oldest first
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def lending(self) -> Iterator[Callable[[int], np.ndarray]]:
        """``lend(size)``: an uninitialized uint8 array of ``size`` bytes, valid
        until the ``with`` block ends (nothing may keep it after)."""
        lent: list[np.ndarray] = []

        def lend(size: int) -> np.ndarray:
            base = self._take(max(1, size))
            lent.append(base)
            return base[:size]

        try:
            yield lend
        finally:
            for base in lent:
                self._give(base)

    @property
    def kept_bytes(self) -> int:
        return sum(a.size for a in self._kept)

    def _take(self, size: int) -> np.ndarray:
        with self._lock:
            fits = [i for i, a in enumerate(self._kept) if a.size >= size]
            if fits:
                return self._kept.pop(min(fits, key=lambda i: self._kept[i].size))
        return np.empty(size, dtype=np.uint8)

    def _give(self, base: np.ndarray) -> None:
        if base.size > self.limit:
            return
        with self._lock:
            self._kept.append(base)
            while len(self._kept) > self.count or sum(a.size for a in self._kept) > self.limit:
                self._kept.pop(0)


BUFFERS = Buffers()


def fresh(size: int) -> np.ndarray:
    """A lender of new arrays (``lending``'s, for callers without a loan)."""
    return np.empty(size, dtype=np.uint8)
