"""DPX (SMPTE 268M): where each image element's pixels are.

The file starts with the magic ``SDPX`` (big-endian fields) or ``XPDS``
(little-endian).  The image information header at byte 768 gives the
number of elements, pixels per line and lines; each of up to eight 72-byte
element records (from byte 780) gives the data sign, descriptor (which sets
the samples per pixel), bit depth, packing (0 = packed stream, 1 = filled
method A, 2 = filled method B), encoding (0 = none) and data offset.  Each
supported element becomes one raster covering all its lines; an element the
codec does not model (RLE, 1-bit, 64-bit, unknown descriptor) is left
verbatim.  One-channel 10-bit filled elements use the ``*_rev`` layouts: the
first pixel sits in the lowest field of the word, as FFmpeg and libdpx read
them.
"""
import struct

from codec import layouts
from codec.raster import Raster

KIND = "dpx"

HEADER_SIZE = 2048      # file + image + orientation + film + television headers
ELEMENTS_AT = 780
ELEMENT_SIZE = 72
UNDEFINED = 0xFFFFFFFF

# descriptor -> samples per pixel (SMPTE 268M table 1)
CHANNELS = {0: 1, 1: 1, 2: 1, 3: 1, 4: 1, 6: 1, 7: 1, 8: 1,
            50: 3, 51: 4, 52: 4, 100: 2, 101: 3, 102: 3, 103: 4,
            150: 2, 151: 3, 152: 4, 153: 5, 154: 6, 155: 7, 156: 8}
DESCRIPTORS = {1: 6, 3: 50, 4: 51}   # what the sample writer uses per channel count


def sample_layout(*, bits: int, packing: int, channels: int, big_endian: bool,
                  signed: bool = False) -> str | None:
    """The ``codec.layouts`` name for a DPX element, or None when not modelled."""
    order = "be" if big_endian else "le"
    if signed:
        return {8: "i8", 16: f"i16{order}"}.get(bits)
    if bits in (8, 16, 32):
        return {8: "u8", 16: f"u16{order}", 32: f"f32{order}"}[bits]
    method = {0: "p", 1: "a", 2: "b"}.get(packing)
    if bits not in (10, 12) or method is None:
        return None
    reversed_fields = bits == 10 and method != "p" and channels == 1
    return f"dpx{bits}{method}{'_rev' if reversed_fields else ''}_{order}"


SIGNATURES = ((0, b"SDPX"), (0, b"XPDS"))      # see formats.parse


def read(data: memoryview) -> list[Raster] | None:
    magic = bytes(data[:4])
    if magic not in (b"SDPX", b"XPDS") or len(data) < ELEMENTS_AT + ELEMENT_SIZE:
        return None
    big_endian = magic == b"SDPX"
    order = ">" if big_endian else "<"
    image_offset, = struct.unpack_from(order + "I", data, 4)
    count, width, height = struct.unpack_from(order + "HII", data, 770)
    if not 1 <= count <= 8 or width == 0 or height == 0:
        return None
    rasters = []
    for index in range(count):
        at = ELEMENTS_AT + index * ELEMENT_SIZE
        if at + ELEMENT_SIZE > len(data):
            return None
        raster = _element(data, at, order=order, size=(width, height),
                          default_offset=image_offset if index == 0 else 0)
        if raster is not None:
            rasters.append(raster)
    return rasters or None


def _element(data, at: int, *, order: str, size: tuple, default_offset: int) -> Raster | None:
    sign, = struct.unpack_from(order + "I", data, at)
    descriptor, bits = data[at + 20], data[at + 23]
    packing, encoding, offset, line_padding = struct.unpack_from(order + "HHII", data, at + 24)
    channels = CHANNELS.get(descriptor)
    if channels is None or encoding != 0 or sign not in (0, 1):
        return None
    if offset in (0, UNDEFINED):
        offset = default_offset
    sample = sample_layout(bits=bits, packing=packing, channels=channels,
                           big_endian=order == ">", signed=sign == 1)
    if sample is None or offset == 0:
        return None
    width, height = size
    stride = layouts.row_bytes(sample, width * channels)
    stride += 0 if line_padding == UNDEFINED else line_padding
    if offset + stride * height > len(data):
        return None
    return Raster(offset=offset, length=stride * height, height=height, width=width,
                  channels=channels, bits=bits, sample=sample)
