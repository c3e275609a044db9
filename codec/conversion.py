"""Samples in and out of their storage layout, a band of rows at a time.

``layouts`` converts a whole raster at a time; on big frames that single
numpy pass would be the serial part of an otherwise parallel encode, so the
rows are cut into bands converted side by side on a thread pool (numpy
releases the GIL).  Decoding packs each tile's rows on the thread that
decoded them, while they are in its cache.
"""
from dataclasses import replace

import numpy as np

from codec import layouts
from codec.pyx import lossless
from codec.raster import Raster

BAND_BYTES = 1 << 18


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
    fields = layouts.word_fields(raster)
    if fields is not None:
        return unpack_fields(raster, np.frombuffer(rows, dtype=np.uint8), fields, row=row, pool=pool)

    def convert(band):
        start, end = band
        part = band_raster(raster, start, end, row)
        chunk = memoryview(rows)[start * row:end * row]
        same = layouts.exact(part, chunk)
        if same is False:
            return None
        pixels = layouts.unpack(part, chunk)
        if same is None:
            same = np.array_equal(np.frombuffer(layouts.pack(part, pixels), dtype=np.uint8),
                                  np.frombuffer(chunk, dtype=np.uint8))
        return pixels if same else None

    parts = list(pool.map(convert, bands(raster, row)))
    if any(part is None for part in parts):
        return None
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def pack_rows(target: memoryview, raster: Raster, pixels: np.ndarray, start: int, end: int, *, row: int) -> None:
    """Write rows ``start``..``end`` of ``pixels`` (height, width, channels) into
    their place in ``target``, which holds the raster's rows back to back (the
    decoder packs each tile's rows as soon as they are decoded); raises
    ValueError when the rows do not fit."""
    if len(target) != row * raster.height:
        raise ValueError("the raster's rows do not fit their place")
    fields = layouts.word_fields(raster)
    if fields is not None:
        word_bytes, big_endian, shifts = fields
        values = np.ascontiguousarray(pixels[start:end], dtype=np.uint16).reshape(-1)
        lossless.pack_fields(values, end - start, raster.width * raster.channels, row, word_bytes, big_endian,
                             shifts, raster.bits, np.frombuffer(target, dtype=np.uint8)[start * row:end * row])
        return
    target[start * row:end * row] = layouts.pack(band_raster(raster, start, end, row), pixels[start:end])


# Layouts of whole samples in single words (filled 10-bit DPX, 12-bit DPX) convert in
# one C pass each way, the exactness check included; numpy takes several.

def unpack_fields(raster: Raster, data: np.ndarray, fields: tuple, *, row: int, pool) -> np.ndarray | None:
    word_bytes, big_endian, shifts = fields
    count = raster.width * raster.channels
    out = np.empty((raster.height, raster.width, raster.channels), dtype=np.uint16)

    def convert(band):
        start, end = band
        return lossless.unpack_fields(data[start * row:end * row], end - start, count, row, word_bytes, big_endian,
                                      shifts, raster.bits, out[start:end].reshape(-1))

    return out if all(list(pool.map(convert, bands(raster, row)))) else None
