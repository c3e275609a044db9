"""FITS: where the image planes of the primary HDU and IMAGE extensions are.

A FITS file is a chain of HDUs, each a header of 80-character ASCII cards in
2880-byte blocks (ending with the ``END`` card) followed by its data, padded
to a whole block.  Data are big-endian; the data size of any HDU is
``|BITPIX|/8 * GCOUNT * (PCOUNT + NAXIS1 * ... * NAXISn)``, which lets the
reader step over tables and other extensions.  Images with BITPIX 8 (``u8``),
16 (``i16be``: signed, so BZERO=32768 unsigned data map straight back to
their unsigned values), 32 (``i32be``), 64 (``i64be``), -32 (``f32be``) and
-64 (``f64be``) become one raster: NAXIS1 is the width, NAXIS2 the height, and
every further axis counts planes, stacked one below the other (the whole planes
of truncated data; the rest stays verbatim).  Random groups stay verbatim.
"""
from math import prod

from codec.raster import Raster

KIND = "fits"

BLOCK = 2880
CARD = 80
SAMPLES = {8: "u8", 16: "i16be", 32: "i32be", 64: "i64be", -32: "f32be", -64: "f64be"}
MAX_HEADER_BLOCKS = 10000


SIGNATURES = ((0, b"SIMPLE  ="),)      # see formats.parse


def read(data: memoryview) -> list[Raster] | None:
    if bytes(data[:9]) != b"SIMPLE  =" or len(data) < BLOCK:
        return None
    position, rasters, primary = 0, [], True
    while position + BLOCK <= len(data):
        cards, start = _header(data, position)
        if primary and cards.get("SIMPLE") != "T":
            return None
        if not primary and "XTENSION" not in cards:
            break                               # trailing bytes that are not an HDU
        bitpix, naxis = int(cards["BITPIX"]), int(cards["NAXIS"])
        axes = [int(cards[f"NAXIS{n}"]) for n in range(1, naxis + 1)]
        if naxis > 999 or any(axis < 0 for axis in axes) or abs(bitpix) not in (8, 16, 32, 64):
            return rasters or None
        groups, extras = int(cards.get("GCOUNT", "1")), int(cards.get("PCOUNT", "0"))
        size = abs(bitpix) // 8 * groups * (extras + prod(axes)) if naxis else 0
        is_image = primary or cards["XTENSION"] == "IMAGE"
        if is_image and naxis and axes[0] and cards.get("GROUPS") != "T" \
                and groups == 1 and extras == 0 and bitpix in SAMPLES:
            rasters += _planes(axes, bitpix=bitpix, start=start, size=len(data))
        position = start + -(-size // BLOCK) * BLOCK
        primary = False
    return rasters or None


def _header(data, position: int) -> tuple[dict, int]:
    """The header's keyword values (as stripped strings) and where its data starts."""
    cards = {}
    for block in range(MAX_HEADER_BLOCKS):
        at = position + block * BLOCK
        if at + BLOCK > len(data):
            raise ValueError("header runs past the end of the file")
        text = bytes(data[at:at + BLOCK]).decode("ascii")
        for index in range(0, BLOCK, CARD):
            card = text[index:index + CARD]
            keyword = card[:8].rstrip()
            if keyword == "END":
                return cards, at + BLOCK
            if card[8:10] == "= " and keyword not in cards:
                cards[keyword] = _value(card[10:])
    raise ValueError("no END card")


def _value(field: str) -> str:
    field = field.strip()
    if field.startswith("'"):                   # a string: up to the closing quote
        return field[1:].split("'", 1)[0].rstrip()
    return field.split("/", 1)[0].strip()


def _planes(axes: list, *, bitpix: int, start: int, size: int) -> list[Raster]:
    width = axes[0]
    height = axes[1] if len(axes) > 1 else 1
    planes = prod(axes[2:])
    plane = width * height * abs(bitpix) // 8
    if not plane:
        return []
    # the planes lie one after another: one raster of them stacked, so that a cube shares one set
    # of statistics (40 planes of 64 x 64 from a CT coded 3.49x one raster a plane, 4.56x stacked;
    # 8 of 256 x 256 4.26x and 4.38x)
    whole = min(planes, (size - start) // plane)
    if whole <= 0:
        return []
    return [Raster(offset=start, length=whole * plane, height=whole * height, width=width,
                   channels=1, bits=abs(bitpix), sample=SAMPLES[bitpix])]
