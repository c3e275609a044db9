"""DICOM Part 10 files with native (uncompressed) pixel data: where the frames are.

After the 128-byte preamble and ``DICM``, the file meta group (always
explicit VR little endian) names the transfer syntax; the codec models the
three native ones: implicit VR little endian, explicit VR little endian and
explicit VR big endian.  The data set is walked element by element (nested
sequences of defined or undefined length are skipped) collecting the image
pixel module — Rows, Columns, SamplesPerPixel, BitsAllocated 8/16/32,
BitsStored, PixelRepresentation, PlanarConfiguration, NumberOfFrames —
until Pixel Data (7FE0,0010).  The frames are one raster, stacked one below
the other (one raster per plane of each frame when PlanarConfiguration is 1).
16-bit rasters carry ``bits = BitsStored`` when
every sample fits that many bits (checked), else 16.  Encapsulated
(compressed) pixel data and subsampled YBR_*_422/420 data are not modelled.
"""
import struct

import numpy as np

from codec.raster import Raster

KIND = "dicom"

PREAMBLE = 128
UNDEFINED = 0xFFFFFFFF
SYNTAXES = {"1.2.840.10008.1.2": (False, "<"),      # implicit VR little endian
            "1.2.840.10008.1.2.1": (True, "<"),     # explicit VR little endian
            "1.2.840.10008.1.2.2": (True, ">")}     # explicit VR big endian (retired)
# VRs whose explicit header has 2 reserved bytes and a 32-bit length
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
            b"UT", b"UV"}
ITEM, ITEM_END, SEQUENCE_END = (0xFFFE, 0xE000), (0xFFFE, 0xE00D), (0xFFFE, 0xE0DD)
PIXEL_DATA = (0x7FE0, 0x0010)
IMAGE_TAGS = {(0x0028, 0x0002): "samples", (0x0028, 0x0004): "photometric",
              (0x0028, 0x0006): "planar", (0x0028, 0x0008): "frames",
              (0x0028, 0x0010): "rows", (0x0028, 0x0011): "columns",
              (0x0028, 0x0100): "allocated", (0x0028, 0x0101): "stored",
              (0x0028, 0x0103): "signed"}
MAX_DEPTH = 16


SIGNATURES = ((PREAMBLE, b"DICM"),)      # see formats.parse


def read(data: memoryview) -> list[Raster] | None:
    if len(data) < PREAMBLE + 4 or bytes(data[PREAMBLE:PREAMBLE + 4]) != b"DICM":
        return None
    position, meta = PREAMBLE + 4, {}
    while position + 8 <= len(data) and struct.unpack_from("<H", data, position)[0] == 2:
        tag, _, value, position = _element(data, position, explicit=True, o="<")
        meta[tag] = bytes(value)
    syntax = meta.get((0x0002, 0x0010), b"").rstrip(b"\0 ").decode("ascii")
    if syntax not in SYNTAXES:
        return None
    explicit, o = SYNTAXES[syntax]
    image = {}
    while position + 8 <= len(data):
        tag, vr, value, position = _element(data, position, explicit=explicit, o=o)
        if tag == PIXEL_DATA:
            return _frames(image, offset=position - len(value), length=len(value),
                           data=data, o=o)
        if tag in IMAGE_TAGS:
            image[IMAGE_TAGS[tag]] = _number(value, vr=vr, tag=tag, o=o)
    return None


def _element(data, at: int, *, explicit: bool, o: str, depth: int = 0):
    """(tag, VR, value bytes, position after the element); sequences are skipped whole."""
    group, number = struct.unpack_from(o + "HH", data, at)
    vr = b""
    if explicit and group != 0xFFFE:
        vr = bytes(data[at + 4:at + 6])
        if vr in LONG_VRS:
            length, = struct.unpack_from(o + "I", data, at + 8)
            start = at + 12
        else:
            length, = struct.unpack_from(o + "H", data, at + 6)
            start = at + 8
    else:
        length, = struct.unpack_from(o + "I", data, at + 4)
        start = at + 8
    if length == UNDEFINED:
        if (group, number) == PIXEL_DATA:
            raise ValueError("encapsulated pixel data")
        # an undefined-length UN holds implicit VR little endian (PS3.5 6.2.2)
        nested = (False, "<") if vr == b"UN" else (explicit, o)
        end = _skip_sequence(data, start, explicit=nested[0], o=nested[1], depth=depth + 1)
        return (group, number), vr, data[start:start], end
    if start + length > len(data):
        raise ValueError("element runs past the end of the file")
    return (group, number), vr, data[start:start + length], start + length


def _skip_sequence(data, at: int, *, explicit: bool, o: str, depth: int) -> int:
    """The position after the sequence delimiter that closes the sequence at ``at``."""
    if depth > MAX_DEPTH:
        raise ValueError("sequences nested too deep")
    while True:
        group, number, length = struct.unpack_from(o + "HHI", data, at)
        at += 8
        if (group, number) == SEQUENCE_END:
            return at
        if (group, number) != ITEM:
            raise ValueError("sequence holds something other than items")
        if length != UNDEFINED:
            at += length
            continue
        while struct.unpack_from(o + "HH", data, at) != ITEM_END:
            at = _element(data, at, explicit=explicit, o=o, depth=depth)[3]
        at += 8


def _number(value, *, vr: bytes, tag: tuple, o: str):
    if IMAGE_TAGS[tag] == "photometric":
        return bytes(value).rstrip(b"\0 ").decode("ascii")
    if IMAGE_TAGS[tag] == "frames":                  # IS: a decimal string
        return int(bytes(value).strip(b"\0 ") or b"1")
    return struct.unpack_from(o + "H", value, 0)[0]


def _frames(image: dict, *, offset: int, length: int, data, o: str) -> list[Raster] | None:
    rows, columns = image.get("rows", 0), image.get("columns", 0)
    samples, frames = image.get("samples", 1), image.get("frames", 1)
    allocated, signed = image.get("allocated", 0), image.get("signed", 0) == 1
    planar = image.get("planar", 0) == 1 and samples > 1
    if "422" in image.get("photometric", "") or "420" in image.get("photometric", ""):
        return None
    if allocated not in (8, 16, 32) or min(rows, columns, samples, frames) <= 0:
        return None
    plane = rows * columns * (1 if planar else samples) * allocated // 8
    planes = samples if planar else 1
    if plane * planes * frames > length:
        return None
    sample = _sample(allocated, signed=signed, o=o)
    bits = allocated
    if allocated == 16:
        bits = _significant_bits(data, offset=offset, count=plane * planes * frames // 2,
                                 dtype=sample.replace("le", "").replace("be", ""), o=o,
                                 stored=image.get("stored", 16))
    if planar:
        return [Raster(offset=offset + index * plane, length=plane, height=rows, width=columns,
                       channels=1, bits=bits, sample=sample)
                for index in range(frames * planes)]
    # the frames lie one after another: one raster of them stacked, so that a multi-frame image
    # shares one set of statistics and palettes, as a FITS cube's planes do (codec/formats/fits.py)
    return [Raster(offset=offset, length=plane * frames, height=rows * frames, width=columns,
                   channels=samples, bits=bits, sample=sample)]


def _sample(allocated: int, *, signed: bool, o: str) -> str:
    if allocated == 8:
        return "i8" if signed else "u8"
    return f"{'i' if signed else 'u'}{allocated}{'le' if o == '<' else 'be'}"


def _significant_bits(data, *, offset: int, count: int, dtype: str, o: str, stored: int) -> int:
    """BitsStored when every sample really fits it (so the coder may rely on it), else 16."""
    if not 1 <= stored < 16:
        return 16
    values = np.frombuffer(data, o + ("i2" if dtype == "i16" else "u2"), count, offset)
    if dtype == "i16":
        fits = values.min() >= -(1 << (stored - 1)) and values.max() < 1 << (stored - 1)
    else:
        fits = values.max() < 1 << stored
    return stored if fits else 16
