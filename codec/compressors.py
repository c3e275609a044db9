"""zstd compressors kept per thread and level, and a decompressor per thread,
for the codec's small streams.

Making a compressor costs as much as compressing a few kB with it (a
decompressor, half as much as reading them back), and neither is safe to
share between threads.  A context keeps the memory its largest
input needed, so only streams of bounded size use these: entropy tables (at
most 22 kB), palettes (at most 128 kB) and a file's bytes outside its rasters
up to KEPT_COMPRESSOR_BYTES (an image's header); more of a file's own bytes
get a fresh one.
"""
import threading

import zstandard

_local = threading.local()
KEPT_COMPRESSOR_BYTES = 128 << 10


def compressor(level: int) -> zstandard.ZstdCompressor:
    """This thread's compressor at ``level``."""
    kept = getattr(_local, "kept", None)
    if kept is None:
        kept = _local.kept = {}
    found = kept.get(level)
    if found is None:
        found = kept[level] = zstandard.ZstdCompressor(level=level)
    return found


def decompressor() -> zstandard.ZstdDecompressor:
    """This thread's decompressor (for ``decompressobj``, which reads a damaged
    frame without allocating what its header claims)."""
    found = getattr(_local, "decompressor", None)
    if found is None:
        found = _local.decompressor = zstandard.ZstdDecompressor()
    return found
