"""CloudMover's lossless image codec: whole files in, identical files out.

``encode`` takes the bytes of any file.  Where it finds pixels it understands
(DPX, Cineon, TIFF, DICOM, FITS, OpenEXR, PNM) it predicts and entropy-codes
them; every other byte, and any file it does not understand, is kept
verbatim (generically compressed).  ``decode`` gives back exactly the original
bytes, or raises ``CodecError``: it checks the original's size and checksum
before returning anything.
"""
import os

from codec import container, formats
from codec.errors import CodecError

__all__ = ["CodecError", "ORIGINAL_PREFIX", "decode", "encode", "info", "is_encoded", "original", "sniff"]

LEVELS = (0, 1, 2, 3)   # 0: no pixel coding (zstd only), 1: fast, 2: default, 3: strongest
DEFAULT_LEVEL = 2


def encode(data, /, *, level: int = DEFAULT_LEVEL, threads: int | None = None) -> bytes:
    """A container holding ``data`` (the bytes of a whole file), compressed."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, not {level!r}")
    parsed = formats.parse(data) if level > 0 else None
    return container.encode(data, kind=parsed.kind if parsed else None,
                            rasters=parsed.rasters if parsed else [],
                            level=level, threads=_threads(threads))


def decode(data, /, *, threads: int | None = None, max_size: int | None = None) -> bytes:
    """The original bytes of a container made by ``encode``; ``CodecError`` if
    the input is not such a container, is truncated or corrupt, or (with
    ``max_size``) would restore more than that many bytes: a caller decoding
    untrusted input sets it, since a tiny container may legitimately stand
    for a huge file."""
    if len(data) == 0:
        raise CodecError("empty input is not a CloudMover codec container")
    try:
        return container.decode(data, threads=_threads(threads), max_size=max_size)
    except MemoryError:
        raise CodecError("container claims more data than this machine can hold: corrupt or too large") from None


def info(data, /) -> dict:
    """What a container holds, from its header (no pixel decoding)."""
    header = container.read_header(data)
    return {
        "format": header.kind or None,
        "container_version": container.VERSION,
        "original_size": header.original_size,
        "encoded_size": len(data),
        "checksum": "xxh3-128:" + header.checksum.hex(),
        "rasters": [
            {"offset": where.raster.offset, "height": where.raster.height, "width": where.raster.width,
             "channels": where.raster.channels, "bits": where.raster.bits, "sample": where.raster.sample,
             "method": container.METHOD_NAMES[method], "encoded_size": len(payload)}
            for where, method, payload in header.rasters
        ],
    }


ORIGINAL_PREFIX = container.ORIGINAL_PREFIX


def original(head, /) -> tuple[int, bytes]:
    """The size and XXH3-128 checksum of the original a container stands for, read from its
    first ``ORIGINAL_PREFIX`` bytes (or all of a shorter container); ``CodecError`` if they
    are no container's.  (``codec.checksum.checksum`` takes the same checksum of any bytes.)"""
    return container.original_of(head)


def is_encoded(data, /) -> bool:
    """True when ``data`` starts with the container's magic number."""
    return container.is_container(data)


def sniff(data, /) -> str | None:
    """The image format of a file's bytes ("dpx", "tiff", …), or None."""
    parsed = formats.parse(data)
    return parsed.kind if parsed else None


def _threads(threads: int | None) -> int:
    if threads is None:
        return max(1, min(os.cpu_count() or 1, 8))
    return max(1, int(threads))
