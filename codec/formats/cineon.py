"""Kodak Cineon (.cin): where the pixels are.

Magic 0x802A5FD7 (big-endian; written byte-swapped by little-endian
writers).  The image information header at byte 192 gives the channel count
and, per channel (28-byte records from byte 196), the bit depth, pixels per
line and lines; the data format block at byte 680 gives interleave, packing
and end-of-line padding.  Only pixel-interleaved images whose channels share
one depth and size are modelled: 10-bit packed three to a 32-bit word, left
justified (packing 5, the usual Cineon film scan, ``dpx10a`` layout), and
8/16-bit one sample per byte/word.  The whole image is one raster.
"""
import struct

from codec import layouts
from codec.raster import Raster

KIND = "cineon"

MAGIC = 0x802A5FD7
HEADER_SIZE = 2048       # file + image + data format + origination + film headers
CHANNELS_AT = 196
CHANNEL_SIZE = 28
FORMAT_AT = 680
LEFT_JUSTIFIED_32 = 5    # packing: three 10-bit samples per 32-bit word, padding at the LSB end


def sample_layout(*, bits: int, packing: int, big_endian: bool) -> str | None:
    order = "be" if big_endian else "le"
    if bits == 10:
        return f"dpx10a_{order}" if packing == LEFT_JUSTIFIED_32 else None
    return {8: "u8", 16: f"u16{order}"}.get(bits)


SIGNATURES = ((0, MAGIC.to_bytes(4, "big")), (0, MAGIC.to_bytes(4, "little")))    # see formats.parse


def read(data: memoryview) -> list[Raster] | None:
    if len(data) < FORMAT_AT + 12:
        return None
    magic_be, = struct.unpack_from(">I", data, 0)
    magic_le, = struct.unpack_from("<I", data, 0)
    if MAGIC not in (magic_be, magic_le):
        return None
    order = ">" if magic_be == MAGIC else "<"
    offset, = struct.unpack_from(order + "I", data, 4)
    channels = data[193]
    if not 1 <= channels <= 8:
        return None
    shapes = {_channel(data, CHANNELS_AT + k * CHANNEL_SIZE, order) for k in range(channels)}
    if len(shapes) != 1:
        return None
    bits, width, height = shapes.pop()
    interleave, packing, signed = data[FORMAT_AT], data[FORMAT_AT + 1], data[FORMAT_AT + 2]
    line_padding, = struct.unpack_from(order + "I", data, FORMAT_AT + 4)
    sample = sample_layout(bits=bits, packing=packing, big_endian=order == ">")
    if sample is None or interleave != 0 or signed != 0 or width == 0 or height == 0:
        return None
    stride = layouts.row_bytes(sample, width * channels)
    stride += 0 if line_padding == 0xFFFFFFFF else line_padding
    if offset < FORMAT_AT or offset + stride * height > len(data):
        return None
    return [Raster(offset=offset, length=stride * height, height=height, width=width,
                   channels=channels, bits=bits, sample=sample)]


def _channel(data, at: int, order: str) -> tuple:
    bits = data[at + 2]
    width, height = struct.unpack_from(order + "II", data, at + 4)
    return bits, width, height
