"""Samples in and out of their storage layout, in bands of rows on a thread pool.

``layouts`` converts a whole raster at a time; on big frames that single
numpy pass would be the serial part of an otherwise parallel encode, so the
rows are cut into bands converted side by side (numpy releases the GIL).
"""
from dataclasses import replace

import numpy as np

from codec import layouts
from codec.raster import Raster

BAND_BYTES = 1 << 20


def bands(raster: Raster, row: int) -> list[tuple[int, int]]:
    rows = max(1, BAND_BYTES // max(1, row))
    return [(y, min(raster.height, y + rows)) for y in range(0, raster.height, rows)]


def band_raster(raster: Raster, start: int, end: int, row: int) -> Raster:
    """Rows ``start``..``end`` of a raster whose rows lie back to back."""
    return replace(raster, height=end - start, length=(end - start) * row, offset=0, row_stride=0)


def unpack_exact(raster: Raster, rows: bytes, *, row: int, pool) -> np.ndarray | None:
    """The samples of ``rows`` (the raster's rows back to back), or None when
    packing them again would not give the same bytes (bits the layout does not
    model, such as non-zero padding)."""
    def convert(band):
        start, end = band
        part = band_raster(raster, start, end, row)
        chunk = memoryview(rows)[start * row:end * row]
        pixels = layouts.unpack(part, chunk)
        same = np.array_equal(np.frombuffer(layouts.pack(part, pixels), dtype=np.uint8),
                              np.frombuffer(chunk, dtype=np.uint8))
        return pixels if same else None

    parts = list(pool.map(convert, bands(raster, row)))
    if any(part is None for part in parts):
        return None
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def pack_into(target: memoryview, raster: Raster, pixels: np.ndarray, *, row: int, pool) -> None:
    """Write the raster's rows back to back into ``target``, for ``pixels``
    (height, width, channels); raises ValueError when they do not fit."""
    if len(target) != row * raster.height:
        raise ValueError("the raster's rows do not fit their place")

    def convert(band):
        start, end = band
        part = band_raster(raster, start, end, row)
        target[start * row:end * row] = layouts.pack(part, pixels[start:end])

    list(pool.map(convert, bands(raster, row)))
