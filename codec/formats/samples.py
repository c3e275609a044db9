"""Sample-file writers: numpy arrays as well-formed files of every modelled format.

Tests and the codec benchmark build their corpora with these.  Each writer
produces what a real writer of that format produces for uncompressed data —
standard header sizes, the fields a real reader checks at their offsets,
undefined DPX/Cineon fields set to all ones — and packs pixels with
``codec.layouts``, so the readers in ``codec.formats`` see exactly the layout
the writer chose.  Arrays are (height, width) or (height, width, channels);
integer samples must already fit the requested bit depth.
"""
import struct

import numpy as np

from codec import layouts
from codec.formats import cineon, dpx
from codec.raster import Raster

CREATOR = "CloudMover codec samples"
TIMESTAMP = "2024:05:17:12:00:00Z"

# whole-word layouts -> the numpy dtype holding a sample in its natural type
NATURAL = {"u8": "u1", "i8": "i1"} | {
    f"{kind}{size}{order}": f"{'<' if order == 'le' else '>'}{kind}{size // 8}"
    for kind in "uif" for size in (16, 32) for order in ("le", "be")}


def write_dpx(array, bits: int = 10, packing: int = 1, big_endian: bool = True) -> bytes:
    """A single-element DPX file (V2.0, 2048-byte header, data at 2048)."""
    pixels = _pixels(array, bits)
    height, width, channels = pixels.shape
    sample = dpx.sample_layout(bits=bits, packing=packing, channels=channels,
                               big_endian=big_endian)
    if sample is None or channels not in dpx.DESCRIPTORS:
        raise ValueError(f"no DPX variant for {bits} bits, packing {packing}, {channels} channels")
    body = _packed(pixels, offset=dpx.HEADER_SIZE, bits=bits, sample=sample)
    o = ">" if big_endian else "<"
    header = bytearray(b"\xff" * dpx.HEADER_SIZE)   # undefined fields are all ones
    struct.pack_into(o + "II8sIIIII", header, 0, 0x53445058, dpx.HEADER_SIZE, b"V2.0",
                     dpx.HEADER_SIZE + len(body), 1, 1664, 384, 0)
    _text(header, 36, 100, "sample.dpx")
    _text(header, 136, 24, TIMESTAMP)
    _text(header, 160, 100, CREATOR)
    _text(header, 260, 200, "")
    _text(header, 460, 200, "")
    struct.pack_into(o + "HHII", header, 768, 0, 1, width, height)
    struct.pack_into(o + "IIfIfBBBBHHIII", header, dpx.ELEMENTS_AT,
                     0, 0, 0.0, (1 << bits) - 1, 2.047,
                     dpx.DESCRIPTORS[channels], 2, 2, bits, packing, 0,
                     dpx.HEADER_SIZE, 0, 0)
    _text(header, dpx.ELEMENTS_AT + 40, 32, "IMAGE DATA")
    header[1356:1408] = bytes(52)                     # image header reserved
    struct.pack_into(o + "IIffII", header, 1408, 0, 0, width / 2, height / 2, width, height)
    for at, size in ((1432, 100), (1532, 24), (1556, 32), (1588, 32)):
        _text(header, at, size, "")
    struct.pack_into(o + "4H2I", header, 1620, 0, 0, 0, 0, 1, 1)
    return bytes(header) + body


def write_cineon(array, big_endian: bool = True) -> bytes:
    """A 10-bit Cineon file (packing 5: three samples per 32-bit word, data at 2048)."""
    pixels = _pixels(array, 10)
    height, width, channels = pixels.shape
    sample = cineon.sample_layout(bits=10, packing=cineon.LEFT_JUSTIFIED_32,
                                  big_endian=big_endian)
    body = _packed(pixels, offset=cineon.HEADER_SIZE, bits=10, sample=sample)
    o = ">" if big_endian else "<"
    header = bytearray(cineon.HEADER_SIZE)
    struct.pack_into(o + "IIIIII8s", header, 0, cineon.MAGIC, cineon.HEADER_SIZE, 1024,
                     1024, 0, cineon.HEADER_SIZE + len(body), b"V4.5")
    _text(header, 32, 100, "sample.cin")
    _text(header, 132, 12, TIMESTAMP[:10])
    _text(header, 144, 12, TIMESTAMP[11:19])
    header[192:194] = bytes((0, channels))
    designators = [(0, 1), (0, 2), (0, 3)] if channels == 3 else [(0, 0)] * channels
    for k in range(8):
        at = cineon.CHANNELS_AT + k * cineon.CHANNEL_SIZE
        if k >= channels:
            header[at:at + cineon.CHANNEL_SIZE] = b"\xff" * cineon.CHANNEL_SIZE
            continue
        struct.pack_into(o + "BBBxIIffff", header, at, *designators[k], 10, width, height,
                         0.0, 0.0, 1023.0, 2.048)
    struct.pack_into(o + "8f", header, 420, 0.3127, 0.329, 0.64, 0.33, 0.3, 0.6, 0.15, 0.06)
    _text(header, 452, 200, "sample film scan")
    struct.pack_into(o + "BBBBII", header, cineon.FORMAT_AT, 0, cineon.LEFT_JUSTIFIED_32,
                     0, 0, 0, 0)
    struct.pack_into(o + "ii", header, 712, 0, 0)
    struct.pack_into(o + "fff", header, 1000, 1.0, 1.0, 1.0)
    return bytes(header) + body


def _pixels(array, bits: int) -> np.ndarray:
    """The array as (height, width, channels), checked to fit ``bits`` if integer."""
    pixels = np.asarray(array)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or 0 in pixels.shape:
        raise ValueError(f"expected a non-empty (height, width[, channels]) array, got {pixels.shape}")
    if pixels.dtype.kind == "u" and bits < 8 * pixels.dtype.itemsize and pixels.max() >> bits:
        raise ValueError(f"samples do not fit {bits} bits")
    return pixels


def _packed(pixels: np.ndarray, *, offset: int, bits: int, sample: str) -> bytes:
    """The pixel bytes in layout ``sample``: numpy serialises whole-word samples itself."""
    if sample in NATURAL:
        return pixels.astype(NATURAL[sample]).tobytes()
    height, width, channels = pixels.shape
    length = height * layouts.row_bytes(sample, width * channels)
    raster = Raster(offset=offset, length=length, height=height, width=width,
                    channels=channels, bits=bits, sample=sample)
    return layouts.pack(raster, pixels)


def _text(buf: bytearray, at: int, size: int, text: str) -> None:
    """A NUL-padded ASCII field, as DPX and Cineon store strings."""
    buf[at:at + size] = text.encode("ascii")[:size].ljust(size, b"\0")


def write_tiff(array, tiles=None, planar: bool = False, big_endian: bool = False, *,
               bigtiff: bool = False, rows_per_strip: int | None = None, gap: int = 0) -> bytes:
    """An uncompressed TIFF (or BigTIFF): strips, or ``tiles=(width, length)``.

    ``array`` may be a list of arrays for a multi-page file.  Pixel chunks come
    first, in order, each followed by ``gap`` zero bytes (as writers that align
    chunks leave); each page's IFD and its out-of-line values follow.  Strips
    default to about 8 KiB.
    """
    pages = [np.asarray(page) for page in (array if isinstance(array, list) else [array])]
    pages = [_pixels(page, 8 * page.dtype.itemsize) for page in pages]
    o = ">" if big_endian else "<"
    out = bytearray(b"MM" if big_endian else b"II")
    out += struct.pack(o + "HHHQ", 43, 8, 0, 0) if bigtiff else struct.pack(o + "HI", 42, 0)
    placed = []
    for page in pages:
        rows = rows_per_strip or max(1, 8192 // (page[0].nbytes or 1))
        chunks = _tiff_chunks(page, tiles=tiles, planar=planar, rows=rows)
        placed.append((page, rows, []))
        for chunk in chunks:
            placed[-1][2].append((len(out), chunk.nbytes))
            out += chunk.astype(chunk.dtype.newbyteorder(o)).tobytes() + bytes(gap)
    link = 8 if bigtiff else 4
    for page, rows, places in placed:
        out += bytes(len(out) % 2)                      # IFDs start on a word boundary
        struct.pack_into(o + ("Q" if bigtiff else "I"), out, link, len(out))
        entries = _tiff_tags(page, places, tiles=tiles, planar=planar, rows=rows,
                             bigtiff=bigtiff)
        link = _tiff_ifd(out, entries, o=o, bigtiff=bigtiff)
    return bytes(out)


def _tiff_chunks(page: np.ndarray, *, tiles, planar: bool, rows: int) -> list[np.ndarray]:
    height, width, channels = page.shape
    planes = [page[:, :, p:p + 1] for p in range(channels)] if planar else [page]
    if tiles is None:
        return [plane[y:y + rows] for plane in planes for y in range(0, height, rows)]
    tile_width, tile_length = tiles
    chunks = []
    for plane in planes:
        for y in range(0, height, tile_length):
            for x in range(0, width, tile_width):
                tile = np.zeros((tile_length, tile_width, plane.shape[2]), plane.dtype)
                part = plane[y:y + tile_length, x:x + tile_width]
                tile[:part.shape[0], :part.shape[1]] = part
                chunks.append(tile)
    return chunks


def _tiff_tags(page: np.ndarray, places: list, *, tiles, planar: bool, rows: int,
               bigtiff: bool) -> list:
    """(tag, type, values) for one page, in tag order."""
    height, width, channels = page.shape
    bits, sample_format = 8 * page.dtype.itemsize, {"u": 1, "i": 2, "f": 3}[page.dtype.kind]
    offset_type = 16 if bigtiff else 4
    offsets, counts = [p for p, _ in places], [n for _, n in places]
    entries = [(254, 4, [0]), (256, 4, [width]), (257, 4, [height]),
               (258, 3, [bits] * channels), (259, 3, [1]), (262, 3, [1 if channels < 3 else 2])]
    if tiles is None:
        entries += [(273, offset_type, offsets), (277, 3, [channels]), (278, 4, [rows]),
                    (279, offset_type, counts)]
    else:
        entries += [(277, 3, [channels])]
    entries += [(282, 5, [72, 1]), (283, 5, [72, 1]), (284, 3, [2 if planar else 1]),
                (296, 3, [2]), (305, 2, CREATOR.encode() + b"\0")]
    if tiles is not None:
        entries += [(322, 3, [tiles[0]]), (323, 3, [tiles[1]]),
                    (324, offset_type, offsets), (325, offset_type, counts)]
    if channels in (2, 4) or channels > 4:
        extra = channels - (1 if channels < 3 else 3)
        entries += [(338, 3, [2] + [0] * (extra - 1))]    # first extra sample: alpha
    return entries + [(339, 3, [sample_format] * channels)]


def _tiff_ifd(out: bytearray, entries: list, *, o: str, bigtiff: bool) -> int:
    """Append an IFD and its out-of-line values; return where its next-IFD link sits."""
    codes = {2: "s", 3: "H", 4: "I", 5: "I", 16: "Q"}
    inline, count_code, entry_code = (8, "Q", "HHQ") if bigtiff else (4, "H", "HHI")
    start = len(out)
    entry_bytes = 20 if bigtiff else 12
    extra_at = start + struct.calcsize(o + count_code) + len(entries) * entry_bytes + inline
    table, extra = bytearray(struct.pack(o + count_code, len(entries))), bytearray()
    for tag, kind, values in entries:
        if kind == 2:
            value, number = bytes(values), len(values)
        else:
            value = struct.pack(f"{o}{len(values)}{codes[kind]}", *values)
            number = len(values) // 2 if kind == 5 else len(values)
        table += struct.pack(o + entry_code, tag, kind, number)
        if len(value) <= inline:
            table += value.ljust(inline, b"\0")
        else:
            table += struct.pack(o + ("Q" if bigtiff else "I"), extra_at + len(extra))
            extra += value + bytes(len(value) % 2)
    link = start + len(table)
    out += table + bytes(inline) + extra
    return link
