"""The original file's checksum (xxh3-128), and taking it while the file is decoded."""
import threading

import xxhash


def checksum(data) -> bytes:
    return xxhash.xxh3_128_digest(data)


class RunningChecksum:
    """The checksum of ``data`` while threads write it, piece by piece.

    A thread that finishes a piece marks it written; whichever thread's mark
    completes a run of written bytes after those already hashed hashes that
    run, while the others go on writing (xxhash releases the GIL).  So the
    checksum is ready soon after the last piece, not one serial pass over the
    whole file later (0.6-0.8 ms of a 12 MB frame's 19 ms on two threads), and
    each piece is hashed while it is still in the cache of the core that
    wrote it.  Pieces must not overlap, and a piece is marked only once every
    byte of it is final."""

    def __init__(self, data):
        self._view = memoryview(data).cast("B")
        self._hash = xxhash.xxh3_128()
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

    def digest(self) -> bytes:
        """The checksum of the whole data, once every writer is done (whatever
        was not marked written is hashed now)."""
        self._hash.update(self._view[self._hashed:])
        self._hashed = len(self._view)
        self._waiting.clear()
        return self._hash.digest()
