"""OpenEXR single-part scanline images without compression: where the channel rows are.

Layout: magic 0x762F3101, a version word (2, flag bits for tiled / long
names / deep / multi-part), header attributes (``name\\0 type\\0 size value``)
ending with a NUL, the line offset table (one u64 per scanline, in y order),
then the blocks.  With compression NONE a block is one scanline: int32 y,
int32 data size, then that line of each channel in turn, channels sorted by
name, each HALF (``f16le``), FLOAT (``f32le``) or UINT (``u32le``).

Consecutive channels of one type form a run; a scanline's rows of a run
(say B, G, R) sit side by side, so they are described as one row of
``channels x width`` samples, and the lines of blocks that follow each other
in the file as one raster with ``row_stride`` = block size: vertical
prediction then works, and the 8-byte block headers between rows stay
verbatim.  Rasters of different runs would interleave, and
``codec.formats.parse`` accepts only rasters whose byte ranges are disjoint,
so with mixed types only the run with the most bytes is described.  Tiled,
deep, multi-part, compressed or subsampled images are not modelled.
"""
import struct

from codec.raster import Raster

KIND = "exr"

MAGIC = b"\x76\x2f\x31\x01"
TILED, LONG_NAMES, DEEP, MULTIPART = 0x200, 0x400, 0x800, 0x1000
SAMPLES = {0: ("u32le", 4, 32), 1: ("f16le", 2, 16), 2: ("f32le", 4, 32)}
NONE = 0
MAX_ATTRIBUTES = 1024


SIGNATURES = ((0, MAGIC),)      # see formats.parse


def read(data: memoryview) -> list[Raster] | None:
    if bytes(data[:4]) != MAGIC or len(data) < 8:
        return None
    version, = struct.unpack_from("<I", data, 4)
    if version & 0xFF != 2 or version & (TILED | DEEP | MULTIPART):
        return None
    attributes, position = _attributes(data, 8)
    if attributes.get("compression", (None, b""))[1] != bytes([NONE]):
        return None
    channels = _channels(attributes["channels"][1])
    xmin, ymin, xmax, ymax = struct.unpack("<4i", attributes["dataWindow"][1])
    width, height = xmax - xmin + 1, ymax - ymin + 1
    if not channels or width <= 0 or height <= 0 or position + 8 * height > len(data):
        return None
    offsets = struct.unpack_from(f"<{height}Q", data, position)
    runs = _runs(channels, width)
    block = 8 + sum(size for _, size, _, _ in runs)
    for index, offset in enumerate(offsets):
        if offset < position + 8 * height or offset + block > len(data) \
                or struct.unpack_from("<iI", data, offset) != (ymin + index, block - 8):
            return None
    # one strided raster per run of same-type channels and stretch of contiguous blocks
    return [Raster(offset=start + 8 + skip, length=block * (lines - 1) + size, height=lines,
                   width=size // (bits // 8), channels=1, bits=bits, sample=sample,
                   row_stride=block)
            for sample, size, bits, skip in runs
            for start, lines in _stretches(sorted(offsets), block)]


def _runs(channels: list, width: int) -> list[tuple]:
    """(sample, row bytes, bits, bytes before it in the line) per run of one-type channels."""
    runs, skip = [], 0
    for sample, size, bits in channels:
        if runs and runs[-1][0] == sample:
            last = runs.pop()
            runs.append((sample, last[1] + size * width, bits, last[3]))
        else:
            runs.append((sample, size * width, bits, skip))
        skip += size * width
    return runs


def _stretches(offsets: list, block: int) -> list[tuple]:
    """(first offset, block count) of each run of blocks that follow each other in the file."""
    stretches = []
    for offset in offsets:
        if stretches and offset == stretches[-1][0] + stretches[-1][1] * block:
            stretches[-1] = (stretches[-1][0], stretches[-1][1] + 1)
        elif stretches and offset < stretches[-1][0] + stretches[-1][1] * block:
            raise ValueError("scanline blocks overlap")
        else:
            stretches.append((offset, 1))
    return stretches


def _attributes(data, at: int) -> tuple[dict, int]:
    """name -> (type, value bytes), and the position after the header's final NUL."""
    attributes = {}
    for _ in range(MAX_ATTRIBUTES):
        if data[at] == 0:
            return attributes, at + 1
        name, at = _string(data, at)
        kind, at = _string(data, at)
        size, = struct.unpack_from("<i", data, at)
        if size < 0 or at + 4 + size > len(data):
            raise ValueError("attribute runs past the end of the file")
        attributes[name] = (kind, bytes(data[at + 4:at + 4 + size]))
        at += 4 + size
    raise ValueError("too many attributes")


def _string(data, at: int) -> tuple[str, int]:
    end = bytes(data[at:at + 256]).index(b"\0")
    return bytes(data[at:at + end]).decode("ascii"), at + end + 1


def _channels(chlist: bytes) -> list[tuple]:
    """(sample layout, bytes per sample, bits) per channel, in file (name) order."""
    channels, at = [], 0
    while chlist[at] != 0:
        end = chlist.index(b"\0", at)
        pixel_type, _, x_sampling, y_sampling = struct.unpack_from("<iB3xii", chlist, end + 1)
        if pixel_type not in SAMPLES or (x_sampling, y_sampling) != (1, 1):
            raise ValueError("channel type or sampling not modelled")
        channels.append(SAMPLES[pixel_type])
        at = end + 1 + 16
    return channels
