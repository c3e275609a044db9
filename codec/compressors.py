"""zstd compressors kept per thread and level, for the codec's small streams.

Making a compressor costs as much as compressing a few kB with it, and one is
not safe to share between threads.  A context keeps the memory its largest
input needed, so only streams of bounded size use these: entropy tables (at
most 22 kB) and palettes (at most 128 kB); a file's own bytes get a fresh one.
"""
import threading

import zstandard

_local = threading.local()


def compressor(level: int) -> zstandard.ZstdCompressor:
    """This thread's compressor at ``level``."""
    kept = getattr(_local, "kept", None)
    if kept is None:
        kept = _local.kept = {}
    found = kept.get(level)
    if found is None:
        found = kept[level] = zstandard.ZstdCompressor(level=level)
    return found
