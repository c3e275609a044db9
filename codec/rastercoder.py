"""Codes one raster of unsigned integer samples, losslessly, in independent tiles.

Wire format of a coded raster (all integers little-endian)::

    u8  coder version (5)
    u32 height, u32 width, u16 channels, u8 bits, u8 coded bits, u32 tile rows
    channel palettes (see codec/palette.py)
    u32 length of the entropy tables, then the tables (see codec/tables.py)
    per tile: channels × u8 predictor, u8 decorrelate, u32 rANS bytes, u32 extra-bit bytes
    per tile: its rANS bytes, then its extra-bit bytes

Tiles are bands of rows.  They share the raster's entropy tables (one set
of statistics, paid for once) but are otherwise independent, so they encode
and decode in parallel: each pass over a raster's tiles is one kernel call,
on OpenMP threads (see ``lossless.model_tiles``).  Version 5 codes each row
as two interleaved lanes (see codec/pyx/lossless.pyx).  The kernels read and
write samples as bytes, so a file's plain 8- and 16-bit words go in and come
out without conversion.
"""
import math
import struct
import sys
import threading
from dataclasses import dataclass

import numpy as np

from codec import palette, tables
from codec.buffers import BUFFERS, fresh
from codec.errors import CodecError
from codec.pyx import lossless
from codec.threads import Later, Pending, runs

VERSION = 5
TILE_SAMPLES = 1 << 17      # samples per tile (at least MIN_TILE_ROWS rows)
MIN_TILE_ROWS = 16
MIN_TILES, SPLIT_SAMPLES, EVEN_BELOW = 4, 1 << 15, 16    # see tile_rows
HEADER = struct.Struct("<BIIHBBI")
TILE_ENTRY_TAIL = struct.Struct("<BII")
NTABLES = lossless.TABLES
NTOKENS = lossless.TOKENS
SAMPLED_ROWS, SAMPLED_EVERY = 4, 128    # the rows whose levels may rule palettes out
REUSED_MAX_BYTES = 64 << 20     # a thread keeps scratch arrays up to this size (see reused)
# rows sampled to choose the predictors, by level
CHOICE_STEP = {1: 64, 2: 16, 3: 2}


def encode(pixels: np.ndarray, bits: int, *, level: int = 2, threads: int = 1) -> bytes:
    """Code ``pixels`` (height, width, channels) of values below 2**bits, on ``threads`` threads."""
    with BUFFERS.lending() as lend:
        return b"".join(encode_pixels(pixels, bits, level=level, threads=threads, lend=lend))


def encode_pixels(pixels: np.ndarray, bits: int, *, level: int = 2, threads: int = 1,
                  side: Pending | None = None, lend=fresh) -> list:
    """``encode``'s coded raster as the pieces it is joined from (see ``encode_parts``)."""
    if pixels.dtype not in (np.uint8, np.uint16):
        pixels = pixels.astype(np.uint16)
    pixels = np.ascontiguousarray(pixels)
    samples = Samples(pixels.reshape(-1).view(np.uint8), *pixels.shape, pixels.dtype.itemsize,
                      sys.byteorder == "big")
    return encode_parts(samples, bits, level=level, threads=threads, checked=False, side=side, lend=lend)


@dataclass(frozen=True)
class Samples:
    """A raster's samples as bytes (a file's, or an array's): ``height`` rows
    of ``width`` pixels of ``channels`` samples of ``itemsize`` (1 or 2) bytes."""
    data: np.ndarray            # uint8, one dimension
    height: int
    width: int
    channels: int
    itemsize: int
    big_endian: bool


def encode_samples(samples: Samples, bits: int, *, level: int = 2, threads: int = 1,
                   checked: bool = True) -> bytes | None:
    """Code ``samples``; with ``checked``, None when one is 2**bits or more
    (the caller keeps such bytes verbatim)."""
    with BUFFERS.lending() as lend:
        parts = encode_parts(samples, bits, level=level, threads=threads, checked=checked, lend=lend)
        return None if parts is None else b"".join(parts)


def encode_parts(samples: Samples, bits: int, *, level: int = 2, threads: int = 1,
                 checked: bool = True, side: Pending | None = None, lend=fresh) -> list | None:
    """``encode_samples``'s coded raster as the pieces it is joined from (bytes-like): a
    caller that joins it into more keeps a serial copy of megabytes (and the
    page faults of a fresh buffer) out of the way.  ``side`` is run beside the
    tiles (see ``lossless.model_tiles``), or not at all (its owner asks for its result).
    The pieces may lie in arrays from ``lend`` (``BUFFERS.lending``): they are
    joined before its loan ends."""
    height, width, channels = samples.height, samples.width, samples.channels
    rows = tile_rows(width * channels, height)
    threads = max(1, threads) if worth_threads(height, width, channels) else 1
    channel_of = np.array(plane_order(channels), dtype=np.uint16)
    palettes = palette.Palettes([None] * channels)
    must_check = checked and bits < 8 * samples.itemsize     # words that can hold more than bits
    paletted = bits >= palette.MIN_BITS
    sample = sampled_bands(height)
    later = Later()     # palettes that pay whatever their stored size are packed beside pass one
    if paletted and not must_check and sum(n for _, n in sample) * width > palette.WORTH_IT * (1 << bits):
        # a sample of the rows first (when it holds enough samples to tell): where each plane's
        # already uses too many levels for a palette to pay (most photos and camera frames),
        # marking every sample (a tenth of the encoding of a 10-bit DPX frame) would tell nothing more
        # (on this thread: a few rows, 52 us alone against 45 us on two, in a region that had to wake the second)
        marks = mark_levels(samples, channel_of, 1, bands=sample)
        paletted = palette.could_pay(marks[0, :, :1 << bits]).any()
    if must_check or paletted:
        marks = mark_levels(samples, channel_of, threads)
        if must_check and marks[:, :, 1 << bits:].any():
            return None
        if paletted:
            palettes = palette.choose(marks, bits, height * width, pool=later, threads=threads)
    coded_bits = palettes.coded_bits(bits)
    if palettes.active:
        ranks = palettes.ranks()
    else:
        ranks = np.zeros((channels, 1), dtype=np.uint16), np.zeros(channels, dtype=np.int32)

    # pass one: every tile's predictors, tokens and extra bits (tile n's at n * bound)
    tiles = -(-height // rows)
    tallest = min(rows, height)
    bound = 2 * tallest * width * channels + 16
    symbols = reused("symbols", (height * width * channels,), np.uint16)     # used up here: no one keeps it
    predictors = np.empty((tiles, channels), dtype=np.uint8)
    decorrelate = np.empty(tiles, dtype=np.uint8)
    extra = lend(bound * tiles)     # untouched pages cost nothing
    extra_used = np.empty(tiles, dtype=np.int64)
    histograms = reused("histograms", (threads, NTABLES, NTOKENS), np.uint64)
    histograms.fill(0)
    lossless.model_tiles(samples.data, samples.itemsize, samples.big_endian, width, channels, channel_of, *ranks,
                         rows, coded_bits, CHOICE_STEP.get(level, 8), predictors, decorrelate, symbols, extra,
                         extra_used, histograms, reused("planes", (threads, channels * tallest * width), np.uint16),
                         reused("scratch", (threads, 2 * tallest + 10, width + 2), np.uint16), threads,
                         Pending(run_all, side, later))
    freq, encoder = tables.encoder_from_histograms(histograms, reused("encoder", (NTABLES * NTOKENS * 4 + 4,), np.uint64),
                                                   threads)

    # pass two: the tokens rANS-coded, tile n into its room of the output from 2 * starts[n] + 24 * n;
    # tiles in twos where that leaves every thread work (see ``in_twos``); storing the tables beside
    starts = np.minimum(np.arange(tiles + 1) * rows, height) * (width * channels)
    jobs = np.array([job + [-1] * (2 - len(job)) for job in in_twos(list(range(tiles)), threads)],
                    dtype=np.int64).reshape(-1, 2)
    out = lend(2 * symbols.size + 24 * tiles)
    begins = np.empty(tiles, dtype=np.int64)
    entropy = Pending(tables.serialize, freq)
    lossless.rans_jobs(symbols, starts, jobs, *encoder, out, begins, threads, entropy)
    entropy = entropy.result()

    parts = [HEADER.pack(VERSION, height, width, channels, bits, coded_bits, rows), palette.serialize(palettes),
             struct.pack("<I", len(entropy)), entropy]
    chosen = predictors.tobytes()
    leaning, used, begins = decorrelate.tolist(), extra_used.tolist(), begins.tolist()
    ends = (2 * starts[1:] + 24 * np.arange(1, tiles + 1)).tolist()
    for n in range(tiles):
        parts.append(chosen[n * channels:(n + 1) * channels])
        parts.append(TILE_ENTRY_TAIL.pack(leaning[n], ends[n] - begins[n], used[n]))
    coded, bits_out = memoryview(out), memoryview(extra)
    for n in range(tiles):
        parts.append(coded[begins[n]:ends[n]])
        parts.append(bits_out[n * bound:n * bound + used[n]])
    return parts


def run_all(side: Pending | None, later: Later) -> None:
    if side is not None:
        side()
    later.run_all()


def sampled_bands(height: int) -> list[tuple[int, int]]:
    """SAMPLED_ROWS rows in every SAMPLED_EVERY, as (first row, rows)."""
    return [(y, min(SAMPLED_ROWS, height - y)) for y in range(0, height, SAMPLED_EVERY)]


def mark_levels(samples: Samples, channel_of: np.ndarray, threads: int, *, bands: list | None = None) -> np.ndarray:
    """Marks (1) of the levels used, thread by thread and plane by plane
    (threads, planes, 2**(8 * itemsize)), by the samples of ``bands`` of rows
    ((first row, rows)) when given, else of every row: an array this thread
    keeps (a fresh 400 kB for a 16-bit RGB raster cost page faults), valid
    until it marks levels again."""
    if bands is None:   # four bands a thread, so one that starts late holds no one up for long
        bands = runs(samples.height, 1 if threads == 1 else 4 * threads)
    marks = reused("marks", (threads, samples.channels, 1 << 8 * samples.itemsize), np.uint8)
    marks.fill(0)
    lossless.mark_bands(samples.data, samples.itemsize, samples.big_endian, samples.width, samples.channels,
                        channel_of, np.array(bands, dtype=np.int64).reshape(-1, 2), marks, threads)
    return marks


def in_twos(tiles: list, threads: int) -> list[list]:
    """``tiles`` as jobs of two neighbours, then of one: each thread's even share
    of them in twos (two tiles coded together take about 1.5 times one, but six
    on two threads as three twos left one thread idle for a third of the time),
    the twos first, so that no thread is left with one while another starts two."""
    twos = sum(length // 2 for _, length in runs(len(tiles), threads))
    return [tiles[i:i + 2] for i in range(0, 2 * twos, 2)] + [[t] for t in tiles[2 * twos:]]


_buffers = threading.local()


def reused(name: str, shape: tuple, dtype, *, zeroed: bool = False) -> np.ndarray:
    """A scratch array of this thread's, kept between rasters: fresh arrays of this
    size cost a page fault per 4 KiB touched, about as much as the kernels' own work
    on them (with a raster's tokens in a fresh array, two threads encoded the bench
    corpus 1.54-1.65x as fast as one; in a kept one, 1.74-1.86x).  Valid until the
    thread asks for ``name`` again.  Arrays above REUSED_MAX_BYTES are not kept.
    With ``zeroed`` a new array starts as zeros (a kept one holds what was left)."""
    size = math.prod(shape) * np.dtype(dtype).itemsize
    store = getattr(_buffers, "store", None)
    if store is None:
        store = _buffers.store = {}
    buffer = store.get(name)
    if buffer is None or buffer.size < size:
        buffer = (np.zeros if zeroed else np.empty)(max(size, 1), dtype=np.uint8)
        if size <= REUSED_MAX_BYTES:
            store[name] = buffer
        else:
            store.pop(name, None)
    return buffer[:size].view(dtype).reshape(shape)


def decode(payload: bytes | memoryview, *, shape: tuple[int, int, int], threads: int = 1,
           into: np.ndarray | None = None, big_endian: bool = False, bits: int | None = None,
           running: lossless.Checksum | None = None, lend=fresh) -> tuple[np.ndarray | None, int]:
    """The pixels (height, width, channels; uint8 up to 8 bits, else uint16)
    and bit depth of a coded raster, which must have the ``shape`` (and the
    ``bits``, when given) its container describes.  With ``into`` (uint8, the
    raster's bytes: one byte a sample up to 8 bits, else two, in the byte order
    ``big_endian`` says) the samples are written there instead, and None is
    returned for them (else in an array from ``lend``: see ``BUFFERS.lending``).  The
    tiles decode on ``threads`` threads, which feed ``running`` the bytes of ``into`` as
    they come out (see ``lossless.decode_tiles``)."""
    view = memoryview(payload)
    if len(view) < HEADER.size + 4:
        raise CodecError("coded raster is truncated")
    version, height, width, channels, stored_bits, coded_bits, rows = HEADER.unpack_from(view, 0)
    if version != VERSION:
        raise CodecError(f"unknown raster coder version {version}")
    if (height, width, channels) != tuple(shape) or bits not in (None, stored_bits) \
            or not (1 <= coded_bits <= stored_bits <= 16 and rows >= 1):
        raise CodecError("coded raster does not match its descriptor")
    bits = stored_bits
    palettes, position = palette.parse(view, HEADER.size, planes=channels, bits=bits)
    if palettes.coded_bits(bits) != coded_bits:
        raise CodecError("coded raster's depth does not match its palettes")
    if palettes.active:
        levels, sizes = palettes.levels()
    else:
        levels, sizes = np.zeros((channels, 1), dtype=np.uint16), np.zeros(channels, dtype=np.int32)
    (entropy_length,) = struct.unpack("<I", read_window(view, position, 4))
    # the table in an array the thread keeps (a fresh 460 kB, zeroed, cost 30-40 us a raster)
    decoder = tables.decoder(read_window(view, position + 4, entropy_length),
                             reused("decoder", (NTABLES * tables.SCALE,), np.uint32, zeroed=True))
    predictors, decorrelate, streams, last = read_tiles(view, position + 4 + entropy_length, height=height,
                                                        rows=rows, channels=channels)
    itemsize = 1 if bits <= 8 else 2        # 8-bit rasters come back as bytes, as files hold them
    pixels = None
    if into is None:
        dtype = np.uint8 if itemsize == 1 else np.uint16
        pixels = lend(height * width * channels * itemsize).view(dtype).reshape(height, width, channels)
        into, big_endian = pixels.reshape(-1).view(np.uint8), sys.byteorder == "big"
    elif into.dtype != np.uint8 or into.shape != (height * width * channels * itemsize,):
        raise CodecError("coded raster's depth does not match its descriptor")
    threads = max(1, threads) if worth_threads(height, width, channels) else 1
    rows = min(rows, height)        # the same tiles (a header may say more rows than an int holds)
    clean = np.empty(len(streams), dtype=np.uint8)
    # the kernel writes each tile's rows in place: channels interleaved, palettes applied
    lossless.decode_tiles(into, itemsize, big_endian, width, channels, coded_bits, rows, predictors, decorrelate,
                          np.frombuffer(view, dtype=np.uint8), streams, last, *decoder,
                          reused("scratch", (threads, 2 * rows + 10, width + 2), np.uint16),
                          np.array(plane_order(channels), dtype=np.uint16), levels, sizes, clean, threads,
                          running)
    if not clean.all():
        raise CodecError("coded raster is corrupt: a tile did not decode cleanly")
    return pixels, bits


def read_tiles(view: memoryview, position: int, *, height: int, rows: int, channels: int) -> tuple:
    """The tile index and where each tile's streams are, checked to fill the payload
    exactly: (predictors, decorrelate, streams, last) as ``lossless.decode_tiles`` takes
    them, ``last`` holding the last tile's streams, each with the decoder's PADDING after
    it (zeros): see ``lossless.tile_index``."""
    index, wrong = lossless.tile_index(np.frombuffer(view, dtype=np.uint8), position, -(-height // rows), channels)
    if wrong is not None:
        raise CodecError(_INDEX_ERRORS[wrong])
    return index


_INDEX_ERRORS = {
    "truncated": "coded raster is truncated",
    "trailing": "coded raster has trailing bytes",
    "unclean": "coded raster is corrupt: a tile did not decode cleanly",
}


def plane_order(channels: int) -> list[int]:
    """Coding order of the planes: for RGB-like pixels the middle (green) plane
    goes first, and the two around it lean on its residuals."""
    return [1, 0, 2, *range(3, channels)] if channels >= 3 else list(range(channels))


def worth_threads(height: int, width: int, channels: int) -> bool:
    """Whether a raster's tiles keep more than one thread busy: not when they are one
    tile, or one and a sliver.  Helpers would only take small side jobs, and handing
    them over and back cost more than they took (two threads ran such rasters 0-15%
    slower than one, encoding and decoding)."""
    rows = tile_rows(width * channels, height)
    return height - rows >= rows // 4


def tile_rows(row_samples: int, height: int) -> int:
    """Rows per tile: the raster cut into tiles of about TILE_SAMPLES samples, all
    of one height but the last (at least MIN_TILE_ROWS rows); a raster of fewer than
    MIN_TILES such tiles into as many tiles as it has SPLIT_SAMPLES (up to
    MIN_TILES), so that two threads share it; and fewer than EVEN_BELOW tiles made
    an even count, so that two threads share them evenly (see ``in_twos``).
    Tiles of 2^17 samples and the rest a sliver (300 rows as 97+97+97+9) left
    one of two threads idle for up to a third of a small image's time: two
    threads encoded two such photos 1.50x and 1.55x as fast as one, 1.65x with
    even tiles, for 0.02% and 0.75% more bytes; three others got 0.06-0.12%
    smaller (the bench corpus's ratio stayed 2.480)."""
    rows = max(MIN_TILE_ROWS, -(-TILE_SAMPLES // max(1, row_samples)))
    samples = height * max(1, row_samples)
    tiles = max(-(-samples // TILE_SAMPLES), min(MIN_TILES, samples // SPLIT_SAMPLES))
    if tiles <= 1:
        return rows     # one tile: the rows of one of 2^17 samples, as before (the header says them)
    if tiles < EVEN_BELOW and tiles % 2:
        tiles += 1
    return max(MIN_TILE_ROWS, -(-height // tiles))


def read_window(view: memoryview, position: int, length: int) -> memoryview:
    if length < 0 or position + length > len(view):
        raise CodecError("coded raster is truncated")
    return view[position:position + length]
