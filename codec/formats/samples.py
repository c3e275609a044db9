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
from codec.formats import cineon, dicom, dpx
from codec.raster import Raster

CREATOR = "CloudMover codec samples"
TIMESTAMP = "2024:05:17:12:00:00Z"

# whole-word layouts -> the numpy dtype holding a sample in its natural type
NATURAL = {"u8": "u1", "i8": "i1"} | {
    f"{kind}{size}{order}": f"{'<' if order == 'le' else '>'}{kind}{size // 8}"
    for kind in "uif" for size in (16, 32) for order in ("le", "be")}


def picture(seed: int, *, height: int = 96, width: int = 160, bits: int = 10) -> np.ndarray:
    """A synthetic RGB picture (height, width, 3) of values below 2**bits: gradients plus a
    little seeded noise, so that a lossless codec really shrinks it, and deterministic."""
    rng = np.random.default_rng(seed)
    top = (1 << bits) - 1
    y, x = np.mgrid[0:height, 0:width]
    channels = [(x * (0.4 + 0.2 * c) + y * (0.6 - 0.1 * c)) / (width + height) * top * 0.8 for c in range(3)]
    image = np.stack(channels, axis=-1) + rng.normal(0, 2.0, (height, width, 3)) + seed % 50
    return np.clip(np.rint(image), 0, top).astype(np.uint16)


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
        raise ValueError(f"expected a non-empty (height, width[, channels]) array, "
                         f"got {pixels.shape}")
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


SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
UID_ROOT = "2.25.31415926535897932384626433832795028"    # a UUID-derived (2.25) root


def write_dicom(array, *, big_endian: bool = False, implicit: bool = False,
                planar: bool = False, bits_stored: int | None = None,
                sequence: bool = True) -> bytes:
    """A secondary-capture DICOM Part 10 file with native pixel data.

    ``array`` is one frame (rows, columns[, samples]) or a list of frames;
    uint8, uint16 or int16 (PixelRepresentation 1).  The transfer syntax is
    explicit VR little endian unless ``implicit`` (implicit VR little endian)
    or ``big_endian`` (explicit VR big endian).  ``sequence`` adds an
    undefined-length sequence before the image module, as real files have.
    """
    if big_endian and implicit:
        raise ValueError("DICOM has no implicit VR big endian transfer syntax")
    frames = [_pixels(frame, bits_stored or 16) for frame in
              (array if isinstance(array, list) else [array])]
    rows, columns, channels = frames[0].shape
    allocated, signed = 8 * frames[0].dtype.itemsize, frames[0].dtype.kind == "i"
    stored = bits_stored or allocated
    o = ">" if big_endian else "<"
    syntax = "1.2.840.10008.1.2" + (".2" if big_endian else "" if implicit else ".1")
    element = _dicom_writer(explicit=not implicit, o=o)
    if planar:
        frames = [np.moveaxis(frame, 2, 0) for frame in frames]
    pixels = b"".join(frame.astype(frame.dtype.newbyteorder(o)).tobytes() for frame in frames)
    body = b"".join([
        element(0x0008, 0x0005, "CS", "ISO_IR 100"),
        element(0x0008, 0x0008, "CS", "DERIVED\\SECONDARY"),
        element(0x0008, 0x0016, "UI", SECONDARY_CAPTURE),
        element(0x0008, 0x0018, "UI", UID_ROOT + ".1"),
        element(0x0008, 0x0020, "DA", TIMESTAMP[:10].replace(":", "")),
        element(0x0008, 0x0060, "CS", "OT"),
        element(0x0008, 0x0064, "CS", "WSD"),
        _dicom_sequence(element, o=o) if sequence else b"",
        element(0x0010, 0x0010, "PN", "Sample^Image"),
        element(0x0010, 0x0020, "LO", "CM0001"),
        element(0x0020, 0x000D, "UI", UID_ROOT + ".2"),
        element(0x0020, 0x000E, "UI", UID_ROOT + ".3"),
        element(0x0020, 0x0013, "IS", "1"),
        element(0x0028, 0x0002, "US", channels),
        element(0x0028, 0x0004, "CS", "RGB" if channels == 3 else "MONOCHROME2"),
        element(0x0028, 0x0006, "US", int(planar)) if channels > 1 else b"",
        element(0x0028, 0x0008, "IS", str(len(frames))) if len(frames) > 1 else b"",
        element(0x0028, 0x0010, "US", rows),
        element(0x0028, 0x0011, "US", columns),
        element(0x0028, 0x0100, "US", allocated),
        element(0x0028, 0x0101, "US", stored),
        element(0x0028, 0x0102, "US", stored - 1),
        element(0x0028, 0x0103, "US", int(signed)),
        element(0x7FE0, 0x0010, "OB" if allocated == 8 else "OW", pixels),
    ])
    meta_element = _dicom_writer(explicit=True, o="<")
    meta = b"".join([
        meta_element(0x0002, 0x0001, "OB", b"\0\1"),
        meta_element(0x0002, 0x0002, "UI", SECONDARY_CAPTURE),
        meta_element(0x0002, 0x0003, "UI", UID_ROOT + ".1"),
        meta_element(0x0002, 0x0010, "UI", syntax),
        meta_element(0x0002, 0x0012, "UI", UID_ROOT + ".9"),
        meta_element(0x0002, 0x0013, "SH", "CLOUDMOVER"),
    ])
    group_length = meta_element(0x0002, 0x0000, "UL", len(meta))
    return bytes(128) + b"DICM" + group_length + meta + body


def _dicom_writer(*, explicit: bool, o: str):
    """A function encoding one data element in the given transfer syntax."""
    def element(group: int, number: int, vr: str, value) -> bytes:
        if vr in ("US", "UL"):
            value = struct.pack(o + ("H" if vr == "US" else "I"), value)
        elif isinstance(value, str):
            value = value.encode("ascii")
            value += (b"\0" if vr == "UI" else b" ") * (len(value) % 2)
        else:
            value = value + bytes(len(value) % 2)
        head = struct.pack(o + "HH", group, number)
        if not explicit:
            return head + struct.pack(o + "I", len(value)) + value
        if vr.encode() in dicom.LONG_VRS:
            return head + vr.encode() + b"\0\0" + struct.pack(o + "I", len(value)) + value
        return head + vr.encode() + struct.pack(o + "H", len(value)) + value
    return element


def _dicom_sequence(element, *, o: str) -> bytes:
    """ReferencedImageSequence, undefined length, one undefined-length item."""
    item = (element(0x0008, 0x1150, "UI", SECONDARY_CAPTURE)
            + element(0x0008, 0x1155, "UI", UID_ROOT + ".7"))
    undefined = struct.pack(o + "I", dicom.UNDEFINED)
    head = element(0x0008, 0x1140, "SQ", b"")[:-4]          # the header, length to follow
    return (head + undefined
            + struct.pack(o + "HH", *dicom.ITEM) + undefined + item
            + struct.pack(o + "HHI", *dicom.ITEM_END, 0)
            + struct.pack(o + "HHI", *dicom.SEQUENCE_END, 0))


FITS_BITPIX = {"u1": 8, "i2": 16, "u2": 16, "i4": 32, "i8": 64, "f4": -32, "f8": -64}


def write_fits(array, extensions=()) -> bytes:
    """A FITS file: ``array`` as the primary image, each of ``extensions`` as an
    IMAGE extension.  Arrays are in FITS-native numpy order, (rows, columns)
    or (planes, rows, columns); uint8, int16, uint16 (stored with BZERO=32768),
    int32, int64, float32 or float64.  ``array=None`` gives an empty primary HDU."""
    hdus = [_fits_hdu(array, primary=True, extended=bool(extensions))]
    hdus += [_fits_hdu(image, primary=False, extended=False, name=f"SCI{index + 1}")
             for index, image in enumerate(extensions)]
    return b"".join(hdus)


def _fits_hdu(array, *, primary: bool, extended: bool, name: str = "") -> bytes:
    pixels = np.zeros((0,), np.uint8) if array is None else np.asarray(array)
    code = pixels.dtype.str[1:]
    if code not in FITS_BITPIX:
        raise ValueError(f"FITS has no BITPIX for {pixels.dtype}")
    axes = [] if array is None else list(reversed(pixels.shape))
    cards = [_card("SIMPLE", True, "conforms to FITS standard") if primary
             else _card("XTENSION", "IMAGE", "image extension"),
             _card("BITPIX", FITS_BITPIX[code], "bits per data value"),
             _card("NAXIS", len(axes), "number of data axes")]
    cards += [_card(f"NAXIS{n + 1}", axis) for n, axis in enumerate(axes)]
    if primary:
        cards += [_card("EXTEND", True, "extensions may follow")] if extended else []
    else:
        cards += [_card("PCOUNT", 0), _card("GCOUNT", 1), _card("EXTNAME", name)]
    if code == "u2":
        cards += [_card("BZERO", 32768, "stored = value - 32768"), _card("BSCALE", 1)]
        pixels = (pixels ^ np.uint16(0x8000)).view(np.int16)
    cards += [_card("ORIGIN", "CloudMover"), _card("DATE", "2024-05-17T12:00:00"),
              "END".ljust(80)]
    header = "".join(cards).encode("ascii")
    body = pixels.astype(pixels.dtype.newbyteorder(">")).tobytes()
    return _fits_padded(header, b" ") + _fits_padded(body, b"\0")


def _card(keyword: str, value, comment: str = "") -> str:
    if isinstance(value, bool):
        text = f"{'T' if value else 'F':>20}"
    elif isinstance(value, int):
        text = f"{value:>20d}"
    else:
        text = f"'{value:<8}'"
    card = f"{keyword:<8}= {text}" + (f" / {comment}" if comment else "")
    return card[:80].ljust(80)


def _fits_padded(data: bytes, fill: bytes) -> bytes:
    return data + fill * (-len(data) % 2880)


EXR_TYPES = {"u4": 0, "f2": 1, "f4": 2}      # UINT, HALF, FLOAT


def write_exr(channels: dict, *, origin=(0, 0)) -> bytes:
    """A single-part scanline OpenEXR file, compression NONE, increasing Y.

    ``channels`` maps names to (height, width) arrays of float16, float32 or
    uint32, all one shape; ``origin`` is the data window's (xmin, ymin)."""
    names = sorted(channels)                      # EXR stores channels sorted by name
    planes = [np.asarray(channels[name]) for name in names]
    if not planes or len({plane.shape for plane in planes}) != 1 or planes[0].ndim != 2:
        raise ValueError("EXR channels must be 2-D arrays of one shape")
    height, width = planes[0].shape
    chlist = b""
    for name, plane in zip(names, planes):
        chlist += name.encode("ascii") + b"\0" + struct.pack(
            "<iB3xii", EXR_TYPES[plane.dtype.str[1:]], 0, 1, 1)
    xmin, ymin = origin
    window = struct.pack("<4i", xmin, ymin, xmin + width - 1, ymin + height - 1)
    attributes = [("channels", "chlist", chlist + b"\0"),
                  ("compression", "compression", bytes([0])),
                  ("dataWindow", "box2i", window),
                  ("displayWindow", "box2i", window),
                  ("lineOrder", "lineOrder", bytes([0])),
                  ("pixelAspectRatio", "float", struct.pack("<f", 1.0)),
                  ("screenWindowCenter", "v2f", struct.pack("<2f", 0.0, 0.0)),
                  ("screenWindowWidth", "float", struct.pack("<f", 1.0))]
    header = b"\x76\x2f\x31\x01" + struct.pack("<I", 2)
    for name, kind, value in attributes:
        header += b"%s\0%s\0" % (name.encode(), kind.encode()) + struct.pack("<i", len(value))
        header += value
    header += b"\0"
    lines = [b"".join(plane[y].astype(plane.dtype.newbyteorder("<")).tobytes() for plane in planes)
             for y in range(height)]
    start = len(header) + 8 * height
    offsets, position = [], start
    for line in lines:
        offsets.append(position)
        position += 8 + len(line)
    blocks = b"".join(struct.pack("<iI", ymin + y, len(line)) + line
                      for y, line in enumerate(lines))
    return header + struct.pack(f"<{height}Q", *offsets) + blocks


PAM_TUPLES = {1: "GRAYSCALE", 2: "GRAYSCALE_ALPHA", 3: "RGB", 4: "RGB_ALPHA"}


def write_pnm(array, maxval: int | None = None, *, pam: bool = False) -> bytes:
    """Binary PGM (one channel) or PPM (three), else — or when ``pam`` — PAM.

    ``maxval`` defaults to the dtype's maximum (255 or 65535); samples take two
    bytes, big-endian, when it is 256 or more.  A list of arrays gives one file
    holding the images back to back, as Netpbm allows."""
    if isinstance(array, list):
        return b"".join(write_pnm(image, maxval, pam=pam) for image in array)
    pixels = np.asarray(array)
    maxval = maxval or (255 if pixels.dtype == np.uint8 else 65535)
    pixels = _pixels(pixels, maxval.bit_length())
    height, width, channels = pixels.shape
    if not pam and channels in (1, 3):
        header = (f"P{5 if channels == 1 else 6}\n# {CREATOR}\n{width} {height}\n"
                  f"{maxval}\n")
    else:
        header = (f"P7\n# {CREATOR}\nWIDTH {width}\nHEIGHT {height}\nDEPTH {channels}\n"
                  f"MAXVAL {maxval}\nTUPLTYPE {PAM_TUPLES.get(channels, 'CHANNELS')}\nENDHDR\n")
    return header.encode("ascii") + pixels.astype(">u1" if maxval < 256 else ">u2").tobytes()
