"""The container: one file in, one self-checking compressed file out.

Wire format, version 1 (integers little-endian)::

    8 bytes  magic  b"\\x89CMV\\r\\n\\x1a\\n"
    u8       container version
    u8       length of the format name, then the name (ASCII; "" when not an image)
    u64      original size
    16 bytes XXH3-128 of the original file
    u8       verbatim method (0 stored, 1 zstd), u64 payload length, payload:
             every byte of the original outside the rasters, in file order
    u32      raster count, then per raster:
             u64 offset, u64 row stride, u32 height, u32 width, u16 channels,
             u8 bits, u8 length of the sample layout name, the name,
             u8 method (1 pixel coder, 2 byte shuffle + zstd, 3 pixel coder with the
             rows' stray bits), u64 payload length, payload; method 3's payload is
             u64 length, zstd of the rows XOR the samples packed again (the bits a
             writer left where the layout has padding), then the coded raster

A raster's rows sit ``row stride`` bytes apart in the original, each row
``layouts.row_bytes`` long; rasters never overlap.  Decoding rebuilds the
verbatim bytes around the rasters, decodes and repacks each raster into place,
and refuses the result unless its size and checksum match the original's.
"""
import struct
from dataclasses import dataclass, replace

import numpy as np
import zstandard

from codec import conversion, layouts, rastercoder
from codec.buffers import BUFFERS, fresh
from codec.checksum import RunningChecksum, checksum
from codec.compressors import KEPT_COMPRESSOR_BYTES, compressor
from codec.threads import Pending
from codec.errors import CodecError
from codec.pyx import lossless
from codec.raster import Raster

MAGIC = b"\x89CMV\r\n\x1a\n"
VERSION = 1
SMALL_ORIGINAL = 1 << 16    # decoded into a bytearray (see ``blank``)
STORED, ZSTD = 0, 1
PIXELS, SHUFFLED, STRAY = 1, 2, 3
METHOD_NAMES = {PIXELS: "pixels", SHUFFLED: "shuffled", STRAY: "pixels+stray-bits"}
STRAY_SHARE = 16        # stray bits are kept beside the pixels while they pack to at most 1/16 of the rows
MAX_ORIGINAL = 1 << 40          # refuse to allocate more than this when decoding
FIXED = struct.Struct("<Q16s")
ORIGINAL_PREFIX = len(MAGIC) + 2 + 255 + FIXED.size    # bytes that hold what ``original_of`` reads
VERBATIM = struct.Struct("<BQ")
RASTER = struct.Struct("<QQIIHB")
PAYLOAD = struct.Struct("<BQ")
STRAY_LENGTH = struct.Struct("<Q")
ZSTD_LEVEL = {0: 1, 1: 1, 2: 3, 3: 9}


def row_bytes(raster: Raster) -> int:
    """Bytes one row of ``raster`` takes in its layout (padding to a whole word included)."""
    return layouts.row_bytes(raster.sample, raster.width * raster.channels)


def compact(raster: Raster) -> Raster:
    """The raster as its rows gathered back to back, which is what the layouts see."""
    return replace(raster, offset=0, length=row_bytes(raster) * raster.height, row_stride=0)


def stride_of(raster: Raster) -> int:
    if raster.row_stride:
        return raster.row_stride
    stride, rest = divmod(raster.length, raster.height)
    return stride if not rest and stride >= row_bytes(raster) else row_bytes(raster)


@dataclass(frozen=True)
class Placed:
    """A raster and where its rows are in the original."""
    raster: Raster
    stride: int

    def spans(self) -> np.ndarray:
        """(start, end) of each row, or of the whole block when rows touch."""
        row = row_bytes(self.raster)
        if self.stride == row:
            return np.array([[self.raster.offset, self.raster.offset + row * self.raster.height]])
        starts = self.raster.offset + np.arange(self.raster.height, dtype=np.int64) * self.stride
        return np.stack([starts, starts + row], axis=1)


def threads_for(threads: int, rasters: list[Raster]) -> int:
    """Threads for a file with these rasters: one unless some raster's tiles keep more
    than one busy (see ``rastercoder.worth_threads``)."""
    if not any(rastercoder.worth_threads(r.height, r.width, r.channels) for r in rasters):
        return 1
    return max(1, threads)


def is_container(data) -> bool:
    return bytes(memoryview(data)[:len(MAGIC)]) == MAGIC


# ---- encoding ---------------------------------------------------------------

def encode(data, *, kind: str | None, rasters: list[Raster], level: int, threads: int) -> bytes:
    with BUFFERS.lending() as lend:     # the rasters' pieces lie in lent arrays until joined
        view = memoryview(data).cast("B")
        parts = []
        placed = []
        digest = Pending(checksum, view)     # taken beside the first raster's tiles (or else here)
        threads = threads_for(threads, rasters)
        for raster in rasters:
            payload = encode_raster(view, raster, level=level, threads=threads, side=digest, lend=lend)
            if payload is not None:
                placed.append(payload)
        digest = digest.result()
        verbatim = gather_verbatim(view, uncovered([p for p, _, _ in placed], len(view)))
        name = (kind or "").encode("ascii")
        parts.append(MAGIC + bytes([VERSION, len(name)]) + name + FIXED.pack(len(view), digest))
        parts.append(pack_stream(verbatim, level))
        parts.append(struct.pack("<I", len(placed)))
        for where, method, payload in placed:
            r = where.raster
            sample = r.sample.encode("ascii")
            parts.append(RASTER.pack(r.offset, where.stride, r.height, r.width, r.channels, r.bits))
            parts.append(bytes([len(sample)]) + sample)
            parts.append(PAYLOAD.pack(method, sum(map(len, payload))))
            parts += payload
        return lossless.join(parts, threads)


def encode_raster(view: memoryview, raster: Raster, *, level: int, threads: int = 1,
                  side: Pending | None = None, lend=fresh):
    """(placement, method, payload as a list of parts) for a raster, or None
    to keep it verbatim; ``side`` may run beside its tiles; the parts may lie in
    arrays from ``lend`` (see ``codec.buffers``)."""
    try:
        where = Placed(raster, stride_of(raster))
        if where.stride < row_bytes(raster) or raster.offset + where.stride * (raster.height - 1) \
                + row_bytes(raster) > len(view):
            return None
        rows = gather_rows(view, where)
        if raster.sample in layouts.SHUFFLED:
            return where, SHUFFLED, [shuffle_compress(rows, layouts.element_size(raster), level)]
        if not 1 <= raster.bits <= 16:
            return None
        order = layouts.plain_word_order(raster)
        if order is not None:
            # samples stored as plain words: the kernels read the file's bytes themselves
            samples = rastercoder.Samples(np.frombuffer(rows, dtype=np.uint8), raster.height, raster.width,
                                          raster.channels, 1 if raster.bits <= 8 else 2, order == ">")
            payload = rastercoder.encode_parts(samples, raster.bits, level=level, threads=threads, side=side,
                                               lend=lend)
            return None if payload is None else (where, PIXELS, payload)
        pixels, stray = conversion.unpack_checked(compact(raster), rows, row=row_bytes(raster), threads=threads,
                                                  lend=lend)
        if stray is not None:   # bits the layout does not model (a writer's leftovers in row padding)
            return with_stray_bits(where, pixels, stray, level=level, threads=threads, side=side, lend=lend)
        return where, PIXELS, rastercoder.encode_pixels(pixels, raster.bits, level=level, threads=threads, side=side,
                                                        lend=lend)
    except CodecError:
        return None             # the layouts refuse the reader's geometry: keep the bytes verbatim


def with_stray_bits(where: Placed, pixels: np.ndarray, stray: np.ndarray, *, level: int, threads: int,
                    side: Pending | None, lend):
    """(placement, STRAY, payload parts) for rows whose words hold bits their layout does not
    model (``stray``: see ``conversion.unpack_checked``): OpenImageIO, for one, leaves whatever
    was in its buffer in the padding that ends a packed DPX row (a 12-bit RGB row of 1,998
    pixels ends in a byte of it).  The samples are pixel-coded and the stray bits kept beside
    them, compressed (mostly zeros); None to keep the rows verbatim when those take more than
    a small share of the rows (a layout that does not fit the bytes at all)."""
    packed = compressor(ZSTD_LEVEL.get(level, 3)).compress(stray.data)
    if len(packed) * STRAY_SHARE > len(stray):
        return None
    coded = rastercoder.encode_pixels(pixels, where.raster.bits, level=level, threads=threads, side=side, lend=lend)
    return where, STRAY, [STRAY_LENGTH.pack(len(packed)), packed, *coded]


def gather_rows(view: memoryview, where: Placed):
    """The raster's rows back to back: a view of them when they already are."""
    row = row_bytes(where.raster)
    height = where.raster.height
    if where.stride == row:
        return view[where.raster.offset:where.raster.offset + row * height]
    grid = np.lib.stride_tricks.as_strided(
        np.frombuffer(view, dtype=np.uint8)[where.raster.offset:],
        shape=(height, row), strides=(where.stride, 1), writeable=False)
    return grid.tobytes()


def fits(where: Placed, size: int) -> bool:
    """The raster's rows lie inside a file of ``size`` bytes, one after another."""
    row = row_bytes(where.raster)
    last = where.raster.offset + where.stride * (where.raster.height - 1) + row
    return where.stride >= row > 0 and where.raster.height >= 1 and last <= size


def uncovered(placed: list[Placed], size: int) -> list[tuple[int, int]]:
    """The (start, end) spans of a file of ``size`` bytes that no raster's rows
    cover, in order; raises if rasters overlap or lie outside the file."""
    if len(placed) == 1 and placed[0].stride == row_bytes(placed[0].raster):
        # one block of rows, most files: in plain integers (numpy's calls took 30-40 us here,
        # serial, 4-5% of a small image's decoding on two threads)
        start = placed[0].raster.offset
        end = start + placed[0].stride * placed[0].raster.height
        if start < 0 or end > size:
            raise CodecError("rasters overlap or lie outside the file")
        return [(a, b) for a, b in ((0, start), (end, size)) if b > a]
    if not placed:
        return [(0, size)] if size else []
    spans = np.concatenate([p.spans() for p in placed])
    spans = spans[np.argsort(spans[:, 0], kind="stable")]
    if (spans[:, 0] < 0).any() or (spans[:, 1] > size).any() or (spans[1:, 0] < spans[:-1, 1]).any():
        raise CodecError("rasters overlap or lie outside the file")
    starts = np.concatenate([[0], spans[:, 1]])
    ends = np.concatenate([spans[:, 0], [size]])
    keep = ends > starts
    return list(zip(starts[keep].tolist(), ends[keep].tolist()))


def gather_verbatim(view: memoryview, gaps: list[tuple[int, int]]) -> bytes:
    return b"".join(view[start:end] for start, end in gaps)


def pack_stream(data: bytes, level: int) -> bytes:
    # an image's header is a few kB, which a new compressor took 15-50 us to start on
    fresh = len(data) > KEPT_COMPRESSOR_BYTES
    zstd_level = ZSTD_LEVEL.get(level, 3)
    packer = zstandard.ZstdCompressor(level=zstd_level) if fresh else compressor(zstd_level)
    packed = packer.compress(data) if data else b""
    if len(packed) < len(data):
        return VERBATIM.pack(ZSTD, len(packed)) + packed
    return VERBATIM.pack(STORED, len(data)) + data


def shuffle_compress(rows: bytes, element: int, level: int) -> bytes:
    usable = len(rows) - len(rows) % element
    shuffled = np.frombuffer(rows, dtype=np.uint8, count=usable).reshape(-1, element).T.tobytes()
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL.get(level, 3)).compress(shuffled + rows[usable:])


# ---- decoding ---------------------------------------------------------------

@dataclass(frozen=True)
class Header:
    kind: str
    original_size: int
    checksum: bytes
    verbatim_method: int
    verbatim: memoryview
    rasters: list        # (Placed, method, payload)


def original_of(head) -> tuple[int, bytes]:
    """(size, XXH3-128) of the original a container stands for, from its first
    ORIGINAL_PREFIX bytes (or all of a shorter container)."""
    _, original_size, digest = _read_prefix(Reader(memoryview(head).cast("B")))
    return original_size, digest


def _read_prefix(reader: "Reader") -> tuple[str, int, bytes]:
    """The format name, original size and checksum that start a container."""
    if bytes(reader.take(len(MAGIC), "magic")) != MAGIC:
        raise CodecError("not a CloudMover codec container (bad magic number)")
    version = reader.byte()
    if version != VERSION:
        raise CodecError(f"container version {version} is not supported (this codec reads {VERSION})")
    name = reader.take(reader.byte(), "format name")
    try:
        kind = bytes(name).decode("ascii")
    except UnicodeDecodeError:
        raise CodecError("container is corrupt: format name is not ASCII") from None
    original_size, digest = reader.unpack(FIXED)
    if original_size > MAX_ORIGINAL:
        raise CodecError(f"container claims an original of {original_size} bytes, more than this codec decodes")
    return kind, original_size, digest


def read_header(data) -> Header:
    view = memoryview(data).cast("B")
    reader = Reader(view)
    kind, original_size, digest = _read_prefix(reader)
    method, length = reader.unpack(VERBATIM)
    verbatim = reader.take(length, "verbatim bytes")
    if method not in (STORED, ZSTD):
        raise CodecError(f"container is corrupt: unknown verbatim method {method}")
    (count,) = reader.unpack(struct.Struct("<I"))
    rasters = []
    for _ in range(count):
        offset, stride, height, width, channels, bits = reader.unpack(RASTER)
        sample = bytes(reader.take(reader.byte(), "sample layout")).decode("ascii", "replace")
        method_r, length_r = reader.unpack(PAYLOAD)
        payload = reader.take(length_r, "raster payload")
        raster = Raster(offset=offset, length=0, height=height, width=width,
                        channels=channels, bits=bits, sample=sample)
        if sample not in layouts.LAYOUTS or method_r not in METHOD_NAMES or height < 1 or width < 1 \
                or channels < 1:
            raise CodecError("container is corrupt: a raster descriptor is invalid")
        rasters.append((Placed(raster, stride), method_r, payload))
    if reader.position != len(view):
        raise CodecError("container is corrupt: trailing bytes after the last raster")
    return Header(kind, original_size, digest, method, verbatim, rasters)


def decode(data, *, threads: int, max_size: int | None = None) -> bytes:
    header = read_header(data)
    size = header.original_size
    if max_size is not None and size > max_size:
        raise CodecError(f"container holds a {size}-byte original, more than the {max_size} bytes allowed")
    for where, _, _ in header.rasters:
        if not fits(where, size):
            raise CodecError("container is corrupt: a raster lies outside the original")
    gaps = uncovered([p for p, _, _ in header.rasters], size)
    # check what the verbatim stream claims before allocating anything of the claimed size
    verbatim_size = sum(end - start for start, end in gaps)
    if stream_size(header.verbatim_method, header.verbatim) != verbatim_size:
        raise CodecError("container is corrupt: verbatim bytes do not fit around the rasters")
    out, target = blank(size)
    running = RunningChecksum(out)
    verbatim = np.frombuffer(unpack_stream(header.verbatim_method, header.verbatim, verbatim_size), dtype=np.uint8)
    position = 0
    for start, end in gaps:
        if position + end - start > len(verbatim):
            raise CodecError("container is corrupt: verbatim bytes are short")
        target[start:end] = verbatim[position:position + end - start]
        running.written(start, end)
        position += end - start
    if position != len(verbatim):
        raise CodecError("container is corrupt: verbatim bytes do not fit around the rasters")
    threads = threads_for(threads, [where.raster for where, _, _ in header.rasters])
    for where, method, payload in header.rasters:
        with BUFFERS.lending() as lend:
            decode_raster(target, where, method, payload, threads=threads, running=running, lend=lend)
    if running.digest() != header.checksum:
        raise CodecError("decoded bytes do not match the original's checksum: the container is corrupt")
    return bytes(out)       # no copy when ``out`` already is bytes


def blank(size: int) -> tuple[bytes | bytearray, np.ndarray]:
    """Room for the original, and a writable array over it.  A large original
    is decoded straight into the bytes returned: a zeroed bytearray copied
    into fresh bytes at the end took two serial passes over new memory, page
    faults included (7-8 ms of a 30 ms 6 MB decode).  Nor are they zeroed
    (a serial pass, 0.3-0.5 ms of it): decoding writes every one of them, the
    gaps from the verbatim stream, the rasters' rows whole (see ``decode_raster``)."""
    if size < SMALL_ORIGINAL:
        out = bytearray(size)
        return out, np.frombuffer(out, dtype=np.uint8)
    out = lossless.uninitialized(size)
    return out, lossless.writable(out)


def decode_raster(target: np.ndarray, where: Placed, method: int, payload: memoryview, *, threads: int = 1,
                  running: RunningChecksum | None = None, lend=fresh) -> None:
    """Decode one raster into its place in ``target`` (the original's bytes),
    every byte of its rows: the kernels write whole tiles, the layouts whole
    rows (a word-field layout's rows are whole words).  ``running`` (over
    ``target``) is given every run of it that is final."""
    raster = where.raster
    row = row_bytes(raster)
    contiguous = where.stride == row
    written = running.written if running is not None else (lambda start, end: None)
    if method == SHUFFLED:
        rows = unshuffle(zstd_decompress(payload, row * raster.height), layouts.element_size(raster))
        if len(rows) != row * raster.height:
            raise CodecError("container is corrupt: a raster decoded to the wrong length")
        scatter_rows(target, where, rows, written)
        return
    stray = None
    if method == STRAY:
        stray, payload = split_stray(payload, row * raster.height)
    place = target[raster.offset:raster.offset + row * raster.height] if contiguous \
        else np.empty(row * raster.height, dtype=np.uint8)
    order = layouts.plain_word_order(raster)
    if stray is not None and order is not None:
        raise CodecError("container is corrupt: stray bits for a raster of plain words")
    # rows written in place are checksummed by the kernels' threads as they come out, when they
    # are the next bytes to hash (and ``running`` is given); else once the raster is whole (rows
    # with stray bits once those are back)
    end = raster.offset + row * raster.height
    feeder = running.feeder(raster.offset) if running is not None and contiguous and stray is None else None
    # plain words are written by the kernel itself, straight into place; other layouts come back as
    # pixels, packed after (an error leaves ``running`` half fed: the decode fails, so no one reads it)
    pixels, _ = rastercoder.decode(payload, shape=(raster.height, raster.width, raster.channels), bits=raster.bits,
                                   threads=threads, into=None if order is None else place, big_endian=order == ">",
                                   running=None if order is None else feeder, lend=lend)
    if order is None:
        try:
            conversion.pack_rows(memoryview(place), compact(raster), pixels, row=row, threads=threads,
                                 running=feeder)
        except ValueError as error:
            raise CodecError(f"container is corrupt: {error}") from None
    if stray is not None:
        np.bitwise_xor(place, stray, out=place)
    if feeder is not None:
        running.fed(end)
    elif contiguous:
        written(raster.offset, end)
    else:
        scatter_rows(target, where, place.tobytes(), written)


def split_stray(payload: memoryview, size: int) -> tuple[np.ndarray, memoryview]:
    """A STRAY payload's stray bits (``size`` bytes, to XOR into the repacked rows) and its coded raster."""
    if len(payload) < STRAY_LENGTH.size:
        raise CodecError("container is corrupt: a raster's stray bits are truncated")
    (length,) = STRAY_LENGTH.unpack_from(payload, 0)
    if length > len(payload) - STRAY_LENGTH.size:
        raise CodecError("container is corrupt: a raster's stray bits are truncated")
    stray = zstd_decompress(payload[STRAY_LENGTH.size:STRAY_LENGTH.size + length], size)
    if len(stray) != size:
        raise CodecError("container is corrupt: a raster's stray bits have the wrong length")
    return np.frombuffer(stray, dtype=np.uint8), payload[STRAY_LENGTH.size + length:]


def scatter_rows(target: np.ndarray, where: Placed, rows: bytes, written) -> None:
    row = row_bytes(where.raster)
    source = np.frombuffer(rows, dtype=np.uint8).reshape(where.raster.height, row)
    grid = np.lib.stride_tricks.as_strided(target[where.raster.offset:], shape=(where.raster.height, row),
                                           strides=(where.stride, 1))
    grid[:] = source
    for start, end in where.spans().tolist():
        written(start, end)


def stream_size(method: int, payload: memoryview) -> int:
    """The length a verbatim stream says it holds (zstd frames carry it)."""
    if method == STORED:
        return len(payload)
    try:
        size = zstandard.frame_content_size(bytes(payload[:18]))
    except zstandard.ZstdError:
        return -1
    return size if size >= 0 else -1


def unpack_stream(method: int, payload: memoryview, limit: int) -> bytes:
    return zstd_decompress(payload, limit) if method == ZSTD else bytes(payload)


def zstd_decompress(payload: memoryview, limit: int) -> bytes:
    """Decompress at most ``limit`` bytes, streaming: a damaged frame header
    cannot make it allocate more than the data needs."""
    try:
        stream = zstandard.ZstdDecompressor().decompressobj()
        out = stream.decompress(bytes(payload))
    except zstandard.ZstdError as error:
        raise CodecError(f"container is corrupt: {error}") from None
    if len(out) > limit or not stream.eof:
        raise CodecError("container is corrupt: a compressed stream has the wrong length")
    return out


def unshuffle(data: bytes, element: int) -> bytes:
    usable = len(data) - len(data) % element
    planes = np.frombuffer(data, dtype=np.uint8, count=usable).reshape(element, -1)
    return planes.T.tobytes() + data[usable:]


class Reader:
    """Bounds-checked reads from the container's bytes."""

    def __init__(self, view: memoryview):
        self.view = view
        self.position = 0

    def take(self, length: int, what: str) -> memoryview:
        if length < 0 or self.position + length > len(self.view):
            raise CodecError(f"container is truncated (while reading the {what})")
        chunk = self.view[self.position:self.position + length]
        self.position += length
        return chunk

    def byte(self) -> int:
        return self.take(1, "header")[0]

    def unpack(self, layout: struct.Struct) -> tuple:
        return layout.unpack(self.take(layout.size, "header"))
