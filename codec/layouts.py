"""Storage layouts of pixel samples: exact unpacking to arrays and packing back.

A ``Raster.sample`` names one entry of ``LAYOUTS``.  ``unpack(raster, buf)``
turns the raster's bytes into an unsigned array of shape (height, width,
channels) — ``uint8`` when ``raster.bits <= 8``, ``uint16`` up to 16 bits,
``uint32`` for the 32-bit layouts — and ``pack(raster, array)`` is its exact
inverse for well-formed data.  Bits that the array cannot carry (DPX padding
bits, row padding, values wider than ``raster.bits``) are dropped by
``unpack`` without complaint, so such a raster simply fails the container's
``pack(unpack(b)) == b`` check and is stored verbatim.

``buf`` is either the raster's own bytes (``len(buf) == raster.length``) or
the whole file (then ``buf[raster.offset:raster.end]`` is used).  Rows start
``raster.row_stride`` bytes apart, or, when that is 0, every ``raster.length
// raster.height`` bytes; bytes between the end of one row's ``row_bytes``
and the next row are not samples, and ``pack`` writes them as zeros (the
container gathers rows back to back before calling these, and keeps those
bytes verbatim).

Layouts (``le``/``be``: byte order of the storage word):

=================  ==========================================================
``u8``, ``i8``     one byte per sample; ``i8`` is two's complement, mapped
                   order-preserving to unsigned by adding 2**(bits-1)
``u16le/be``       one 16-bit word per sample, ``bits`` 9..16 significant
``i16le/be``       signed 16-bit (DICOM PixelRepresentation=1, FITS BITPIX=16):
                   value = (x + 2**(bits-1)) mod 2**bits, i.e. ``x ^ 0x8000``
                   at 16 bits — sign-extended data round-trips
``f16le/be``       IEEE half (EXR HALF): mapped to an order-preserving uint16
                   (negative: ``~x``; positive: ``x | 0x8000``)
``u32 i32 f32``    32-bit samples (``le``/``be``): not pixel-coded.  Unpacked
                   as their raw bit patterns in a ``uint32`` array; listed in
                   ``SHUFFLED`` so the container byte-shuffles and zstd-
                   compresses them instead
``u64 i64 f64``    64-bit samples (FITS BITPIX 64/-64, TIFF): the same, in
                   ``uint64`` words
``dpx10a_be/le``   DPX 10-bit filled, method A: three samples per 32-bit word
                   at bits 31-22, 21-12, 11-2 (first sample highest, 2 padding
                   bits at the LSB end); Cineon 10-bit is ``dpx10a_be``
``dpx10b_be/le``   DPX 10-bit filled, method B: bits 29-20, 19-10, 9-0
                   (2 padding bits at the MSB end)
``dpx10a_rev_*``   the same words with the first sample in the *lowest* field
``dpx10b_rev_*``   (bits 11-2 resp. 9-0): how FFmpeg and libdpx read
                   one-channel 10-bit filled DPX
``dpx12a_be/le``   DPX 12-bit filled, method A: one sample per 16-bit word,
                   shifted left by 4 (low 4 bits padding)
``dpx12b_be/le``   DPX 12-bit filled, method B: the low 12 bits of a 16-bit word
``dpx10p_be/le``   DPX packing 0: samples back to back in a bit stream of
``dpx12p_be/le``   32-bit words, each word filled from its least significant
                   bit up (FFmpeg ``read12in32``, libdpx ``ReadPacked``)
=================  ==========================================================

Every row of a multi-sample-per-word layout starts on a fresh storage word
(DPX rows are padded to a 32-bit boundary).
"""
import functools
import sys
from dataclasses import dataclass

import numpy as np

from codec.errors import CodecError
from codec.raster import Raster


@dataclass(frozen=True)
class Whole:
    """One sample per storage word; ``kind`` says how words map to unsigned values."""
    word: str     # numpy dtype of the storage word, with byte order
    kind: str     # "unsigned", "signed", "half" or "raw"

    @property
    def word_bytes(self) -> int:
        return np.dtype(self.word).itemsize

    @property
    def max_bits(self) -> int:
        return 16 if self.kind == "half" else 8 * self.word_bytes

    def row_bytes(self, count: int) -> int:
        return count * self.word_bytes

    def unpack_rows(self, rows: np.ndarray, count: int, bits: int) -> np.ndarray:
        words = rows[:, :self.row_bytes(count)].view(self.word)
        unsigned = words.astype(words.dtype.newbyteorder("="), copy=True)
        if self.kind == "raw":
            return unsigned
        if self.kind == "half":
            # negative halves: flip all bits; positive: set the sign bit
            unsigned ^= (unsigned >> 15) * np.uint16(0x7FFF) | np.uint16(0x8000)
            return unsigned
        out = unsigned.astype(_value_dtype(bits), copy=False)
        if self.kind == "signed":
            out += 1 << (bits - 1)      # wraps modulo the word width, as wanted
        if bits < 8 * self.word_bytes:
            out &= (1 << bits) - 1
        return out

    def exact(self, rows: np.ndarray, count: int, bits: int) -> bool | None:
        """Whether packing the unpacked rows gives them back, when that is
        cheap to tell without packing (None: pack and compare)."""
        if self.kind != "unsigned":
            return None
        if bits >= 8 * self.word_bytes:
            return True
        words = rows[:, :self.row_bytes(count)].view(self.word)
        return int(words.max(initial=0)) < (1 << bits)

    def pack_rows(self, values: np.ndarray, bits: int) -> np.ndarray:
        storage = np.dtype(self.word).newbyteorder("=")
        words = values.astype(storage)
        if self.kind == "half":
            words ^= ((words >> 15) ^ np.uint16(1)) * np.uint16(0x7FFF) | np.uint16(0x8000)
        elif self.kind == "signed":
            # wrapping subtraction gives two's complement sign-extended to the word
            words -= storage.type(1 << (bits - 1))
        return words.astype(self.word).view(np.uint8).reshape(values.shape[0], -1)


@dataclass(frozen=True)
class Bitfield:
    """Several samples per storage word, or samples spanning words.

    The pattern repeats every ``period_words`` words holding ``period_samples``
    samples; ``fields[s]`` lists where sample ``s`` of a period lives, as
    ``(word index, bit shift in that word, field width, bit position in the value)``.
    """
    word: str
    period_samples: int
    period_words: int
    fields: tuple

    @property
    def word_bytes(self) -> int:
        return np.dtype(self.word).itemsize

    @property
    def max_bits(self) -> int:
        return sum(width for _, _, width, _ in self.fields[0])

    def row_words(self, count: int) -> int:
        # a Python int: the packed layouts' periods are numpy integers, and a numpy int64 row
        # length overflowed (OverflowError, not CodecError) in a damaged container's geometry checks
        return int(-(-count * self.period_words // self.period_samples))

    def row_bytes(self, count: int) -> int:
        return self.row_words(count) * self.word_bytes

    def unpack_rows(self, rows: np.ndarray, count: int, bits: int) -> np.ndarray:
        height, nwords = rows.shape[0], self.row_words(count)
        groups = -(-count // self.period_samples)
        stored = rows[:, :nwords * self.word_bytes].view(self.word)
        if nwords == groups * self.period_words:    # whole periods: no zero fill needed
            words = stored.astype(np.uint32)
        else:
            words = np.zeros((height, groups * self.period_words), np.uint32)
            words[:, :nwords] = stored
        words = words.reshape(height, groups, self.period_words)
        out = np.empty((height, groups, self.period_samples), _value_dtype(bits))
        for s, parts in enumerate(self.fields):
            value = 0
            for index, shift, width, at in parts:
                # bits past raster.bits are dropped (they then fail the round-trip check)
                field = (words[:, :, index] >> shift) & ((1 << max(0, min(width, bits - at))) - 1)
                value = value | (field << at) if at else field
            out[:, :, s] = value
        return out.reshape(height, -1)[:, :count]

    def exact(self, rows: np.ndarray, count: int, bits: int) -> bool | None:
        """As ``Whole.exact``, for one-word periods whose fields hold whole
        samples (filled DPX): exact when every bit outside the fields the
        row's samples use is zero."""
        if self.period_words != 1 or any(len(parts) != 1 or parts[0][2] != bits or parts[0][3]
                                         for parts in self.fields):
            return None
        def kept(samples: int) -> int:
            return sum(((1 << width) - 1) << shift for (_, shift, width, _), in self.fields[:samples])
        words = rows[:, :self.row_words(count) * self.word_bytes].view(self.word)
        whole, rest = divmod(count, self.period_samples)
        everything = (1 << 8 * self.word_bytes) - 1
        if np.bitwise_and(words[:, :whole], everything & ~kept(self.period_samples)).any():
            return False
        return not rest or not np.bitwise_and(words[:, whole:], everything & ~kept(rest)).any()

    def pack_rows(self, values: np.ndarray, bits: int) -> np.ndarray:
        height, count = values.shape
        groups = -(-count // self.period_samples)
        padded = np.zeros((height, groups * self.period_samples), np.uint32)
        padded[:, :count] = values
        padded &= (1 << bits) - 1
        padded = padded.reshape(height, groups, self.period_samples)
        words = np.zeros((height, groups, self.period_words), np.uint32)
        for s, parts in enumerate(self.fields):
            for index, shift, width, at in parts:
                words[:, :, index] |= ((padded[:, :, s] >> at) & ((1 << width) - 1)) << shift
        words = words.reshape(height, -1)[:, :self.row_words(count)]
        return words.astype(self.word).view(np.uint8)


def _value_dtype(bits: int):
    return np.uint8 if bits <= 8 else np.uint16 if bits <= 16 else np.uint32


def _filled10(word: str, shifts: tuple) -> Bitfield:
    return Bitfield(word, 3, 1, tuple(((0, shift, 10, 0),) for shift in shifts))


def _stream(word: str, bits: int) -> Bitfield:
    """Samples back to back in 32-bit words, each word filled from bit 0 up."""
    period_samples = 32 // np.gcd(bits, 32)
    fields = []
    for s in range(period_samples):
        start, parts, done = s * bits, [], 0
        while done < bits:
            index, shift = divmod(start + done, 32)
            width = min(bits - done, 32 - shift)
            parts.append((index, shift, width, done))
            done += width
        fields.append(tuple(parts))
    return Bitfield(word, period_samples, period_samples * bits // 32, tuple(fields))


def _build() -> dict:
    layouts = {"u8": Whole("u1", "unsigned"), "i8": Whole("u1", "signed")}
    for suffix, order in (("le", "<"), ("be", ">")):
        layouts |= {
            f"u16{suffix}": Whole(order + "u2", "unsigned"),
            f"i16{suffix}": Whole(order + "u2", "signed"),
            f"f16{suffix}": Whole(order + "u2", "half"),
            f"u32{suffix}": Whole(order + "u4", "raw"),
            f"i32{suffix}": Whole(order + "u4", "raw"),
            f"f32{suffix}": Whole(order + "u4", "raw"),
            f"u64{suffix}": Whole(order + "u8", "raw"),
            f"i64{suffix}": Whole(order + "u8", "raw"),
            f"f64{suffix}": Whole(order + "u8", "raw"),
            f"dpx10a_{suffix}": _filled10(order + "u4", (22, 12, 2)),
            f"dpx10b_{suffix}": _filled10(order + "u4", (20, 10, 0)),
            f"dpx10a_rev_{suffix}": _filled10(order + "u4", (2, 12, 22)),
            f"dpx10b_rev_{suffix}": _filled10(order + "u4", (0, 10, 20)),
            f"dpx12a_{suffix}": Bitfield(order + "u2", 1, 1, (((0, 4, 12, 0),),)),
            f"dpx12b_{suffix}": Bitfield(order + "u2", 1, 1, (((0, 0, 12, 0),),)),
            f"dpx10p_{suffix}": _stream(order + "u4", 10),
            f"dpx12p_{suffix}": _stream(order + "u4", 12),
        }
    return layouts


LAYOUTS: dict = _build()

# 32- and 64-bit samples: the container byte-shuffles and zstd-compresses
# these instead of pixel-coding them.
SHUFFLED = frozenset(f"{kind}{size}{order}" for kind in "uif" for size in (32, 64) for order in ("le", "be"))


def element_size(raster: Raster) -> int:
    """Bytes of the storage word the raster's samples live in (4 or 8 for ``SHUFFLED``)."""
    return _layout(raster.sample).word_bytes


def row_bytes(sample: str, count: int) -> int:
    """Bytes one row of ``count`` samples occupies, before any extra row padding."""
    return _layout(sample).row_bytes(count)


def unpack(raster: Raster, buf) -> np.ndarray:
    """The raster's samples as a fresh (height, width, channels) unsigned array."""
    layout, rows = _layout(raster.sample), _rows(raster, buf)
    count = raster.width * raster.channels
    values = np.ascontiguousarray(layout.unpack_rows(rows, count, raster.bits))
    return values.reshape(raster.height, raster.width, raster.channels)


def plain_word_order(raster: Raster) -> str | None:
    """"<" or ">" (or "|" for bytes) when the raster's samples are plain
    unsigned words of the width the raster coder returns (one byte up to 8
    bits, else two), whose bytes it can write itself; else None."""
    layout = LAYOUTS.get(raster.sample)
    if not isinstance(layout, Whole) or layout.kind != "unsigned":
        return None
    if layout.word_bytes != (1 if raster.bits <= 8 else 2):
        return None
    if layout.word_bytes == 1:
        return "|"
    order = np.dtype(layout.word).byteorder
    return order if order != "=" else "<" if sys.byteorder == "little" else ">"


def word_fields(raster: Raster) -> tuple | None:
    """(word bytes, big-endian, shifts) when every storage word holds up to
    len(shifts) whole samples of ``raster.bits`` bits at those shifts (filled
    10-bit DPX, 12-bit DPX): the kernels then convert them directly."""
    layout = LAYOUTS.get(raster.sample)
    if not isinstance(layout, Bitfield) or layout.period_words != 1:
        return None
    if any(len(parts) != 1 or parts[0][0] != 0 or parts[0][2] != raster.bits or parts[0][3]
           for parts in layout.fields):
        return None
    order = np.dtype(layout.word).byteorder
    big = order == ">" or (order == "=" and sys.byteorder == "big")
    return layout.word_bytes, big, tuple(parts[0][1] for parts in layout.fields)


def bit_run(raster: Raster) -> tuple[bool, int] | None:
    """(big-endian, sample width) when ``raster``'s samples follow each other as one run of
    bits through 32-bit words, each word filled from its lowest bit up (packed 10- and 12-bit
    DPX), which the kernels convert (``lossless.unpack_bit_runs``)."""
    run = _bit_run(raster.sample)
    return run if run is not None and 1 <= raster.bits <= run[1] else None


@functools.lru_cache(maxsize=None)
def _bit_run(sample: str) -> tuple[bool, int] | None:
    layout = LAYOUTS.get(sample)
    if not isinstance(layout, Bitfield) or layout.word_bytes != 4:
        return None
    width = layout.max_bits
    if not 1 <= width <= 16 or layout.period_samples * width != 32 * layout.period_words:
        return None
    for index, parts in enumerate(layout.fields):
        bit = index * width
        first = min(width, 32 - bit % 32)
        expected = [(bit // 32, bit % 32, first, 0)] + ([(bit // 32 + 1, 0, width - first, first)] if first < width else [])
        if [tuple(int(v) for v in part) for part in parts] != expected:
            return None
    order = np.dtype(layout.word).byteorder
    return order == ">" or (order == "=" and sys.byteorder == "big"), width


def exact(raster: Raster, buf) -> bool | None:
    """Whether ``pack(unpack(raster, buf))`` gives the raster's bytes back,
    when the layout can tell that cheaply; None when it cannot (then pack
    and compare).  Rows must lie back to back."""
    layout, rows = _layout(raster.sample), _rows(raster, buf)
    count = raster.width * raster.channels
    if _stride(raster) != layout.row_bytes(count):
        return None
    return layout.exact(rows, count, raster.bits)


def pack(raster: Raster, array) -> bytes:
    """The raster's bytes for ``array``: the exact inverse of ``unpack``."""
    layout, stride = _layout(raster.sample), _stride(raster)
    count = raster.width * raster.channels
    values = np.asarray(array)
    if values.size != raster.height * count:
        raise CodecError(f"{values.shape} does not fit a {raster.height}x{raster.width}x"
                         f"{raster.channels} raster")
    body = layout.pack_rows(values.reshape(raster.height, count), raster.bits)
    if body.shape[1] == stride and raster.length == body.size:
        return body.tobytes()
    out = np.zeros(raster.length, np.uint8)
    _strided(out, raster, stride, writeable=True)[:] = body
    return out.tobytes()


def _layout(sample: str):
    try:
        return LAYOUTS[sample]
    except KeyError:
        raise CodecError(f"unknown sample layout {sample!r}") from None


def _stride(raster: Raster) -> int:
    """Bytes from one row to the next; checks the raster's geometry on the way."""
    layout = _layout(raster.sample)
    if min(raster.height, raster.width, raster.channels, raster.bits) <= 0:
        raise CodecError(f"empty or negative raster geometry: {raster}")
    if raster.bits > layout.max_bits:
        raise CodecError(f"{raster.bits} bits do not fit layout {raster.sample}")
    row = layout.row_bytes(raster.width * raster.channels)
    stride, rest = raster.row_stride, 0
    if not stride:
        stride, rest = divmod(raster.length, raster.height)
    if rest or stride < row or raster.length < stride * (raster.height - 1) + row:
        raise CodecError(f"raster length {raster.length} does not hold "
                         f"{raster.height} rows of layout {raster.sample}")
    return stride


def _strided(span: np.ndarray, raster: Raster, stride: int, *, writeable: bool) -> np.ndarray:
    """The rows of a raster's byte span, ``stride`` bytes apart, as a (height, row) view."""
    row = _layout(raster.sample).row_bytes(raster.width * raster.channels)
    return np.lib.stride_tricks.as_strided(span, shape=(raster.height, row),
                                           strides=(stride, 1), writeable=writeable)


def _rows(raster: Raster, buf) -> np.ndarray:
    view = memoryview(buf).cast("B")
    if len(view) != raster.length:
        if len(view) < raster.end:
            raise CodecError(f"{len(view)} bytes cannot hold raster {raster}")
        view = view[raster.offset:raster.end]
    return _strided(np.frombuffer(view, np.uint8), raster, _stride(raster), writeable=False)
