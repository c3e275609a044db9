"""Binary Netpbm images (PGM ``P5``, PPM ``P6``, PAM ``P7``): where each image's samples are.

A P5/P6 header is the magic, width, height and maxval as decimal tokens
separated by whitespace (``#`` comments allowed), then exactly one
whitespace byte; a P7 header is ``WIDTH``/``HEIGHT``/``DEPTH``/``MAXVAL``/
``TUPLTYPE`` lines closed by ``ENDHDR``.  Samples are one byte when maxval <
256 (``u8``), else two bytes big-endian (``u16be``); ``bits`` is maxval's bit
length, which the format guarantees every sample fits.  A file may hold
several images back to back: each is one raster.
"""
from codec.raster import Raster

KIND = "pnm"

CHANNELS = {b"P5": 1, b"P6": 3}
WHITESPACE = b" \t\n\v\f\r"
MAX_HEADER = 4096
MAX_IMAGES = 100000


SIGNATURES = ((0, b"P5"), (0, b"P6"), (0, b"P7"))      # see formats.parse


def read(data: memoryview) -> list[Raster] | None:
    position, rasters = 0, []
    while position < len(data) and len(rasters) < MAX_IMAGES:
        magic = bytes(data[position:position + 2])
        head = bytes(data[position:position + MAX_HEADER])
        if magic in CHANNELS:
            (width, height, maxval), start = _tokens(head, 2, count=3)
            channels = CHANNELS[magic]
        elif magic == b"P7":
            width, height, channels, maxval, start = _pam(head)
        else:
            break                              # anything after the last image stays verbatim
        if min(width, height, channels) <= 0 or not 0 < maxval < 65536:
            break
        start += position
        length = width * height * channels * (1 if maxval < 256 else 2)
        if start + length > len(data):
            break
        rasters.append(Raster(offset=start, length=length, height=height, width=width,
                              channels=channels, bits=maxval.bit_length(),
                              sample="u8" if maxval < 256 else "u16be"))
        position = start + length
    return rasters or None


def _tokens(head: bytes, at: int, *, count: int) -> tuple[list, int]:
    """``count`` decimal tokens after ``at``, and where the samples start."""
    values = []
    while len(values) < count:
        if head[at] in WHITESPACE:
            at += 1
        elif head[at] == ord("#"):
            at = head.index(b"\n", at) + 1
        else:
            end = at
            while head[end] not in WHITESPACE and head[end] != ord("#"):
                end += 1
            if not head[at:end].isdigit():
                raise ValueError("not a decimal number")
            values.append(int(head[at:end]))
            at = end
    if head[at] not in WHITESPACE:
        raise ValueError("no whitespace before the samples")
    return values, at + 1


def _pam(head: bytes) -> tuple:
    end = head.index(b"\nENDHDR\n")
    fields = {}
    for line in head[3:end].split(b"\n"):
        words = line.split()
        if words and not words[0].startswith(b"#") and len(words) >= 2:
            fields[words[0]] = words[1]
    numbers = [int(fields[key]) for key in (b"WIDTH", b"HEIGHT", b"DEPTH", b"MAXVAL")]
    return (*numbers, end + len(b"\nENDHDR\n"))
