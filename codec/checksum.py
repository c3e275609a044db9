"""The original file's checksum (xxh3-128), and taking it while the file is decoded."""
import threading

from codec.pyx.lossless import Checksum


def checksum(data) -> bytes:
    """XXH3-128 of ``data``, by the same vendored hash the kernels feed (the ``xxhash`` package
    stays the tests' independent reference)."""
    whole = Checksum()
    whole.update(memoryview(data).cast("B"))
    return whole.digest()


class RunningChecksum:
    """The checksum of ``data`` while threads write it, piece by piece.

    A thread that finishes a piece marks it written; whichever thread's mark
    completes a run of written bytes after those already hashed hashes that
    run, while the others go on writing (the hash releases the GIL).  So the
    checksum is ready soon after the last piece, not one serial pass over the
    whole file later (0.6-0.8 ms of a 12 MB frame's 19 ms on two threads), and
    each piece is hashed while it is still in the cache of the core that
    wrote it.  Pieces must not overlap, and a piece is marked only once every
    byte of it is final.  A kernel whose OpenMP threads write a raster hashes
    it the same way, tile by tile, given the hash itself (``feeder``): Python
    threads were gone from decoding, and a raster was hashed once whole (half
    a millisecond of a 6 MB frame's 11-12 ms on two threads, serial)."""

    def __init__(self, data):
        self._view = memoryview(data).cast("B")
        self._hash = Checksum()     # xxh3_128 that the kernels can feed (see ``feeder``)
        self._hashed = 0            # the first byte not yet fed to the hash
        self._waiting = {}          # start → end of written pieces beyond it
        self._feeding = False       # a thread is feeding the hash
        self._lock = threading.Lock()

    def written(self, start: int, end: int) -> None:
        """Bytes ``start`` to ``end`` of the data are final."""
        if end <= start:
            return
        with self._lock:
            self._waiting[start] = end
            if self._feeding:
                return              # the feeding thread takes this piece when it reaches it
            self._feeding = True
        self._feed()

    def _feed(self) -> None:
        while True:
            with self._lock:
                start = end = self._hashed
                while end in self._waiting:
                    end = self._waiting.pop(end)
                if end == start:
                    self._feeding = False
                    return
            self._hash.update(self._view[start:end])
            self._hashed = end      # only the feeding thread reads or writes it

    def feeder(self, start: int) -> Checksum | None:
        """The hash itself, for a kernel's threads to feed the bytes from ``start``
        on, in order (``lossless.decode_tiles``), when they are the next to hash and
        no thread is hashing; else None.  The caller then says how far it fed with
        ``fed``, and marks nothing written before that."""
        with self._lock:
            if self._feeding or self._hashed != start:
                return None
            self._feeding = True
            return self._hash

    def fed(self, end: int) -> None:
        """The kernel given ``feeder`` fed every byte up to ``end``; pieces marked
        written beyond it are hashed now, as far as they run on."""
        self._hashed = end
        self._feed()

    def digest(self) -> bytes:
        """The checksum of the whole data, once every writer is done (whatever
        was not marked written is hashed now)."""
        self._hash.update(self._view[self._hashed:])
        self._hashed = len(self._view)
        self._waiting.clear()
        return self._hash.digest()
