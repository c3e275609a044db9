"""Codes one raster of unsigned integer samples, losslessly, in independent tiles.

Wire format of a coded raster (all integers little-endian)::

    u8  coder version (4)
    u32 height, u32 width, u16 channels, u8 bits, u8 coded bits, u32 tile rows
    channel palettes (see codec/palette.py)
    u32 length of the entropy tables, then the tables (see codec/tables.py)
    per tile: channels × u8 predictor, u8 decorrelate, u32 rANS bytes, u32 extra-bit bytes
    per tile: its rANS bytes, then its extra-bit bytes

Tiles are bands of rows.  They share the raster's entropy tables (one set of
statistics, paid for once) but are otherwise independent, so they encode and
decode in parallel threads (the kernels release the GIL).
"""
import struct

import numpy as np

from codec import palette, tables
from codec.errors import CodecError
from codec.pyx import lossless
from codec.threads import pool_of

VERSION = 4
TILE_SAMPLES = 1 << 17      # samples per tile (at least MIN_TILE_ROWS rows)
MIN_TILE_ROWS = 16
HEADER = struct.Struct("<BIIHBBI")
TILE_ENTRY_TAIL = struct.Struct("<BII")
NTABLES = lossless.TABLES
NTOKENS = lossless.TOKENS
# rows sampled to choose the predictors, by level
CHOICE_STEP = {1: 64, 2: 16, 3: 2}


def encode(pixels: np.ndarray, bits: int, *, level: int = 2, threads: int = 1, pool=None) -> bytes:
    """Code ``pixels`` (height, width, channels) of values below 2**bits, on
    ``pool`` (an executor) or on ``threads`` threads of its own."""
    if pool is None:
        with pool_of(threads) as own:
            return encode(pixels, bits, level=level, pool=own)
    height, width, channels = pixels.shape
    rows = tile_rows(height, width * channels)
    order = plane_order(channels)
    step = CHOICE_STEP.get(level, 8)
    marks = bits >= palette.MIN_BITS

    def split(y):
        planes = np.ascontiguousarray(pixels[y:y + rows].transpose(2, 0, 1)[order], dtype=np.uint16)
        used = np.zeros((channels, 1 << bits), dtype=np.uint8) if marks else None
        if marks:
            lossless.mark_levels(planes, used)
        return planes, used

    tiles = list(pool.map(split, range(0, height, rows)))
    palettes = palette.Palettes([None] * channels)
    if marks:
        used = tiles[0][1]
        for _, more in tiles[1:]:
            np.bitwise_or(used, more, out=used)
        palettes = palette.choose(used, height * width)
    coded_bits = palettes.coded_bits(bits)
    ranks = palettes.ranks(bits) if palettes.active else None

    def model(tile):
        planes = tile[0]
        if ranks is not None:
            lossless.remap(planes, *ranks)
        predictors, decorrelate = lossless.choose(planes, coded_bits, step)
        predictors = np.array(predictors, dtype=np.uint8)
        symbols = np.empty(planes.size, dtype=np.uint16)
        extra = np.empty(planes.size * 2 + 16, dtype=np.uint8)
        histogram = np.zeros((NTABLES, NTOKENS), dtype=np.uint32)
        used = lossless.model_tile(planes, coded_bits, predictors, decorrelate, symbols, extra, histogram,
                                   scratch_for(planes.shape[1], width))
        return predictors, decorrelate, symbols, extra[:used].tobytes(), histogram

    modelled = list(pool.map(model, tiles))
    del tiles
    histogram = sum(m[4].astype(np.uint64) for m in modelled)
    freq = tables.normalize(tables.pool(histogram))
    encoder = tables.encoder(freq)

    def code(m):
        out = np.empty(m[2].size * 2 + 24, dtype=np.uint8)
        begin = lossless.rans_tile(m[2], *encoder, out)
        return out[begin:].tobytes()

    coded = list(pool.map(code, modelled))

    entropy = tables.serialize(freq)
    parts = [HEADER.pack(VERSION, height, width, channels, bits, coded_bits, rows), palette.serialize(palettes),
             struct.pack("<I", len(entropy)), entropy]
    for (predictors, decorrelate, _, extra, _), rans in zip(modelled, coded):
        parts.append(predictors.tobytes())
        parts.append(TILE_ENTRY_TAIL.pack(int(decorrelate), len(rans), len(extra)))
    for (_, _, _, extra, _), rans in zip(modelled, coded):
        parts.append(rans)
        parts.append(extra)
    return b"".join(parts)


def decode(payload: bytes | memoryview, *, shape: tuple[int, int, int], threads: int = 1,
           pool=None) -> tuple[np.ndarray, int]:
    """The pixels (height, width, channels, uint16) and bit depth of a coded
    raster, which must have the ``shape`` its container describes."""
    if pool is None:
        with pool_of(threads) as own:
            return decode(payload, shape=shape, pool=own)
    view = memoryview(payload)
    if len(view) < HEADER.size + 4:
        raise CodecError("coded raster is truncated")
    version, height, width, channels, bits, coded_bits, rows = HEADER.unpack_from(view, 0)
    if version != VERSION:
        raise CodecError(f"unknown raster coder version {version}")
    if (height, width, channels) != tuple(shape) or not (1 <= coded_bits <= bits <= 16 and rows >= 1):
        raise CodecError("coded raster does not match its descriptor")
    palettes, position = palette.parse(view, HEADER.size, planes=channels, bits=bits)
    if palettes.coded_bits(bits) != coded_bits:
        raise CodecError("coded raster's depth does not match its palettes")
    levels = palettes.levels() if palettes.active else None
    (entropy_length,) = struct.unpack("<I", read_window(view, position, 4))
    position += 4
    entropy = read_window(view, position, entropy_length)
    position += entropy_length
    slot_symbol, freq, start = tables.decoder(entropy)
    tiles = []
    for y in range(0, height, rows):
        entry = read_window(view, position, channels + TILE_ENTRY_TAIL.size)
        predictors = np.frombuffer(entry[:channels], dtype=np.uint8)
        decorrelate, rans_length, extra_length = TILE_ENTRY_TAIL.unpack_from(entry, channels)
        tiles.append((y, min(rows, height - y), predictors, decorrelate, rans_length, extra_length))
        position += len(entry)
    pixels = np.empty((height, width, channels), dtype=np.uint16)
    jobs = []
    for y, count, predictors, decorrelate, rans_length, extra_length in tiles:
        rans = read_window(view, position, rans_length)
        extra = read_window(view, position + rans_length, extra_length)
        position += rans_length + extra_length
        jobs.append((y, count, predictors, decorrelate, rans, extra))
    if position != len(view):
        raise CodecError("coded raster has trailing bytes")
    inverse = np.argsort(plane_order(channels))

    def run(job):
        y, count, predictors, decorrelate, rans, extra = job
        planes = np.empty((channels, count, width), dtype=np.uint16)
        clean = lossless.decode_tile(planes, coded_bits, predictors, bool(decorrelate), padded(rans), padded(extra),
                                     slot_symbol, freq, start, scratch_for(count, width))
        if levels is not None:
            clean = lossless.remap(planes, *levels) and clean
        pixels[y:y + count] = planes[inverse].transpose(1, 2, 0)
        return clean

    clean = list(pool.map(run, jobs))
    if not all(clean):
        raise CodecError("coded raster is corrupt: a tile did not decode cleanly")
    return pixels, bits


def plane_order(channels: int) -> list[int]:
    """Coding order of the planes: for RGB-like pixels the middle (green) plane
    goes first, and the two around it lean on its residuals."""
    return [1, 0, 2, *range(3, channels)] if channels >= 3 else list(range(channels))


def scratch_for(rows: int, width: int) -> np.ndarray:
    return np.empty((2 * rows + 6, width + 2), dtype=np.uint16)


def padded(stream: memoryview) -> np.ndarray:
    out = np.zeros(len(stream) + lossless.PADDING, dtype=np.uint8)
    out[:len(stream)] = np.frombuffer(stream, dtype=np.uint8)
    return out


def tile_rows(height: int, row_samples: int) -> int:
    return max(MIN_TILE_ROWS, -(-TILE_SAMPLES // max(1, row_samples)))


def read_window(view: memoryview, position: int, length: int) -> memoryview:
    if length < 0 or position + length > len(view):
        raise CodecError("coded raster is truncated")
    return view[position:position + length]
