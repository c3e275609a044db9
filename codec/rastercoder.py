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
from dataclasses import dataclass

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
    rows = tile_rows(width * channels)
    tiles = list(pool.map(lambda y: split(pixels[y:y + rows], bits), range(0, height, rows)))
    palettes = find_palettes([used for _, used in tiles], bits, channels=channels, samples=height * width)
    coded_bits = palettes.coded_bits(bits)
    ranks = palettes.ranks(bits) if palettes.active else None
    step = CHOICE_STEP.get(level, 8)
    planes = [tile[0] for tile in tiles]
    del tiles

    def model_and_free(index):
        # a tile's planes are not needed once modelled: let them go at once (memory)
        modelled, planes[index] = model(planes[index], ranks, coded_bits, step), None
        return modelled

    modelled = list(pool.map(model_and_free, range(len(planes))))
    freq = tables.normalize(tables.pool(sum(m.histogram.astype(np.uint64) for m in modelled)))
    encoder = tables.encoder(freq)
    coded = list(pool.map(lambda m: code(m.symbols, encoder), modelled))

    entropy = tables.serialize(freq)
    parts = [HEADER.pack(VERSION, height, width, channels, bits, coded_bits, rows), palette.serialize(palettes),
             struct.pack("<I", len(entropy)), entropy]
    for m, rans in zip(modelled, coded):
        parts.append(m.predictors.tobytes())
        parts.append(TILE_ENTRY_TAIL.pack(int(m.decorrelate), len(rans), len(m.extra)))
    for m, rans in zip(modelled, coded):
        parts.append(rans)
        parts.append(m.extra)
    return b"".join(parts)


def split(band: np.ndarray, bits: int):
    """A tile's planes in coding order, and which levels each plane uses."""
    planes = np.ascontiguousarray(band.transpose(2, 0, 1)[plane_order(band.shape[2])], dtype=np.uint16)
    if bits < palette.MIN_BITS:
        return planes, None
    used = np.zeros((planes.shape[0], 1 << bits), dtype=np.uint8)
    lossless.mark_levels(planes, used)
    return planes, used


def find_palettes(marks: list, bits: int, *, channels: int, samples: int) -> palette.Palettes:
    if marks[0] is None:
        return palette.Palettes([None] * channels)
    used = marks[0]
    for more in marks[1:]:
        np.bitwise_or(used, more, out=used)
    return palette.choose(used, samples)


@dataclass(frozen=True)
class Modelled:
    predictors: np.ndarray
    decorrelate: bool
    symbols: np.ndarray
    extra: bytes
    histogram: np.ndarray


def model(planes: np.ndarray, ranks, bits: int, step: int) -> Modelled:
    """Pass one on a tile: its predictors, tokens, extra bits and token counts."""
    if ranks is not None:
        lossless.remap(planes, *ranks)
    predictors, decorrelate = lossless.choose(planes, bits, step)
    predictors = np.array(predictors, dtype=np.uint8)
    symbols = np.empty(planes.size, dtype=np.uint16)
    extra = np.empty(planes.size * 2 + 16, dtype=np.uint8)
    histogram = np.zeros((NTABLES, NTOKENS), dtype=np.uint32)
    used = lossless.model_tile(planes, bits, predictors, decorrelate, symbols, extra, histogram,
                               scratch_for(planes.shape[1], planes.shape[2]))
    return Modelled(predictors, decorrelate, symbols, extra[:used].tobytes(), histogram)


def code(symbols: np.ndarray, encoder) -> bytes:
    """Pass two on a tile: its tokens, rANS-coded with the raster's tables."""
    out = np.empty(symbols.size * 2 + 24, dtype=np.uint8)
    begin = lossless.rans_tile(symbols, *encoder, out)
    return out[begin:].tobytes()


@dataclass(frozen=True)
class Tile:
    y: int
    rows: int
    predictors: np.ndarray
    decorrelate: bool
    rans: memoryview
    extra: memoryview


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
    decoder = tables.decoder(read_window(view, position + 4, entropy_length))
    tiles = read_tiles(view, position + 4 + entropy_length, height=height, rows=rows, channels=channels)
    pixels = np.empty((height, width, channels), dtype=np.uint16)
    inverse = np.argsort(plane_order(channels))

    def run(tile: Tile) -> bool:
        planes = np.empty((channels, tile.rows, width), dtype=np.uint16)
        clean = lossless.decode_tile(planes, coded_bits, tile.predictors, tile.decorrelate, padded(tile.rans),
                                     padded(tile.extra), *decoder, scratch_for(tile.rows, width))
        if levels is not None:
            clean = lossless.remap(planes, *levels) and clean
        pixels[tile.y:tile.y + tile.rows] = planes[inverse].transpose(1, 2, 0)
        return clean

    if not all(list(pool.map(run, tiles))):
        raise CodecError("coded raster is corrupt: a tile did not decode cleanly")
    return pixels, bits


def read_tiles(view: memoryview, position: int, *, height: int, rows: int, channels: int) -> list[Tile]:
    """The tile index and each tile's streams, checked to fill the payload exactly."""
    entries = []
    for y in range(0, height, rows):
        entry = read_window(view, position, channels + TILE_ENTRY_TAIL.size)
        decorrelate, rans_length, extra_length = TILE_ENTRY_TAIL.unpack_from(entry, channels)
        entries.append((y, np.frombuffer(entry[:channels], dtype=np.uint8), bool(decorrelate),
                        rans_length, extra_length))
        position += len(entry)
    tiles = []
    for y, predictors, decorrelate, rans_length, extra_length in entries:
        rans = read_window(view, position, rans_length)
        extra = read_window(view, position + rans_length, extra_length)
        position += rans_length + extra_length
        tiles.append(Tile(y, min(rows, height - y), predictors, decorrelate, rans, extra))
    if position != len(view):
        raise CodecError("coded raster has trailing bytes")
    return tiles


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


def tile_rows(row_samples: int) -> int:
    return max(MIN_TILE_ROWS, -(-TILE_SAMPLES // max(1, row_samples)))


def read_window(view: memoryview, position: int, length: int) -> memoryview:
    if length < 0 or position + length > len(view):
        raise CodecError("coded raster is truncated")
    return view[position:position + length]
