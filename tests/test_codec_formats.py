"""Format readers, sample layouts and sample writers of the image codec.

Every writer variant must be found by its reader as exactly the rasters the
writer laid out, ``unpack`` must give back the written samples and ``pack``
the written bytes.  Damaged files must give ``None`` or a sound raster list,
never an exception.
"""
import io

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from codec import layouts
from codec.formats import READERS, parse, samples
from codec.raster import Raster

SEED = 20240517


def rng(*salt):
    return np.random.default_rng([SEED, *salt])


def image(shape, dtype, *, bits=None, salt=0):
    """A seeded image with smooth structure plus noise, like a real picture."""
    dtype = np.dtype(dtype)
    generator = rng(salt, *shape)
    if dtype.kind == "f":
        values = generator.standard_normal(shape) * 100
        values[..., 0] = np.inf if shape[1] > 2 else values[..., 0]   # specials survive too
        return values.astype(dtype)
    info = np.iinfo(dtype)
    low, high = (0, (1 << bits) - 1) if bits else (info.min, info.max)
    return generator.integers(low, high, size=shape, endpoint=True).astype(dtype)


def unpacked(array, sample):
    """What ``layouts.unpack`` returns for samples written in their natural type."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[:, :, None]
    if sample in layouts.SHUFFLED:
        return array.view(f"u{array.dtype.itemsize}")
    if array.dtype.kind == "f":                      # half: order-preserving map
        raw = array.view(np.uint16)
        return raw ^ ((raw >> 15) * np.uint16(0x7FFF) | np.uint16(0x8000))
    if array.dtype.kind == "i":
        unsigned = array.view(f"u{array.dtype.itemsize}")
        return unsigned ^ unsigned.dtype.type(1 << (8 * array.dtype.itemsize - 1))
    return array


def check_file(data, kind, expected):
    """The file parses as ``kind`` into rasters holding ``expected`` (array, sample) pairs."""
    parsed = parse(data)
    assert parsed is not None and parsed.kind == kind
    assert [r.sample for r in parsed.rasters] == [sample for _, sample in expected]
    for raster, (array, sample) in zip(parsed.rasters, expected):
        values = layouts.unpack(raster, data)
        want = unpacked(array, sample)
        assert values.shape == (raster.height, raster.width, raster.channels)
        assert values.dtype == want.dtype
        np.testing.assert_array_equal(values, want)
        assert layouts.pack(raster, values) == data[raster.offset:raster.end]
    return parsed.rasters


# ---------------------------------------------------------------- layouts

GEOMETRIES = [(5, 7, 3), (4, 1, 1), (3, 17, 1), (2, 16, 4), (1, 33, 2)]


def value_bits(sample):
    layout = layouts.LAYOUTS[sample]
    return layout.max_bits


@pytest.mark.parametrize("sample", sorted(layouts.LAYOUTS))
@pytest.mark.parametrize("padding", [0, 4])
def test_layout_round_trip(sample, padding):
    bits = value_bits(sample)
    for index, (height, width, channels) in enumerate(GEOMETRIES):
        stride = layouts.row_bytes(sample, width * channels) + padding
        raster = Raster(offset=0, length=stride * height, height=height, width=width,
                        channels=channels, bits=bits, sample=sample)
        dtype = np.uint8 if bits <= 8 else np.uint16 if bits <= 16 else np.uint32
        values = rng(index, bits).integers(0, 1 << bits, (height, width, channels),
                                            dtype=np.uint64).astype(dtype)
        data = layouts.pack(raster, values)
        assert len(data) == raster.length
        back = layouts.unpack(raster, data)
        assert back.dtype == dtype and back.flags.writeable and back.flags.c_contiguous
        np.testing.assert_array_equal(back, values)
        assert layouts.pack(raster, back) == data


@pytest.mark.parametrize("sample, values, expected", [
    # DPX 10-bit filled: method A first sample at bits 31-22, method B at 29-20
    ("dpx10a_be", [1, 2, 3], "0040200c"),
    ("dpx10b_be", [1, 2, 3], "00100803"),
    ("dpx10a_le", [1, 2, 3], "0c204000"),
    ("dpx10a_rev_be", [1, 2, 3], "00c02004"),
    ("dpx10b_rev_be", [1, 2, 3], "00300801"),
    ("dpx12a_be", [0xABC], "abc0"),
    ("dpx12b_le", [0xABC], "bc0a"),
    # packing 0: a bit stream filled from bit 0 of each 32-bit word
    ("dpx12p_le", [0xABC, 0x123], "bc3a1200"),
    ("dpx12p_be", [0xABC, 0x123], "00123abc"),
    ("dpx10p_be", [1, 2, 3, 4], "00300801" "00000001"),
    ("i16be", [0, 0xFFFF], "80007fff"),
    ("f16le", [0xBC00, 0x43FF], "003c00bc"),          # +1.0 and -1.0
])
def test_layout_bit_positions(sample, values, expected):
    count = len(values)
    raster = Raster(offset=0, length=len(expected) // 2, height=1, width=count, channels=1,
                    bits=value_bits(sample), sample=sample)
    assert layouts.pack(raster, np.array(values)).hex() == expected
    assert layouts.unpack(raster, bytes.fromhex(expected)).ravel().tolist() == values


def test_half_mapping_preserves_order():
    halves = np.array([-np.inf, -2, -1, -1e-3, -0.0, 0.0, 1e-3, 1, 2, np.inf], "<f2")
    raster = Raster(offset=0, length=halves.nbytes, height=1, width=len(halves), channels=1,
                    bits=16, sample="f16le")
    mapped = layouts.unpack(raster, halves.tobytes()).ravel().astype(int)
    assert np.all(np.diff(mapped) > 0)


def test_signed_below_16_bits_round_trips_only_in_range():
    raster = Raster(offset=0, length=8, height=1, width=4, channels=1, bits=12, sample="i16le")
    inside = np.array([-2048, -1, 0, 2047], "<i2").tobytes()
    assert layouts.unpack(raster, inside).ravel().tolist() == [0, 2047, 2048, 4095]
    assert layouts.pack(raster, layouts.unpack(raster, inside)) == inside
    outside = np.array([-2049, 3000, 0, 0], "<i2").tobytes()
    assert layouts.pack(raster, layouts.unpack(raster, outside)) != outside


@pytest.mark.parametrize("sample", ["dpx10a_be", "dpx10b_le", "dpx12a_be", "dpx10p_le",
                                    "u16be"])
def test_nonzero_padding_bits_unpack_but_do_not_round_trip(sample):
    bits = 10 if sample.startswith("dpx10") else 12
    raster = Raster(offset=0, length=layouts.row_bytes(sample, 5) * 2, height=2, width=5,
                    channels=1, bits=bits, sample=sample)
    data = b"\xff" * raster.length                  # every padding bit set
    values = layouts.unpack(raster, data)
    assert values.max() == (1 << bits) - 1
    assert layouts.pack(raster, values) != data


def test_unpack_takes_raster_bytes_or_whole_file():
    raster = Raster(offset=3, length=4, height=2, width=2, channels=1, bits=8, sample="u8")
    whole = b"abc" + bytes([1, 2, 3, 4]) + b"z"
    np.testing.assert_array_equal(layouts.unpack(raster, whole),
                                  layouts.unpack(raster, bytes([1, 2, 3, 4])))


@pytest.mark.parametrize("raster", [
    Raster(offset=0, length=5, height=2, width=2, channels=1, bits=8, sample="u8"),
    Raster(offset=0, length=2, height=2, width=2, channels=1, bits=8, sample="u8"),
    Raster(offset=0, length=4, height=0, width=2, channels=1, bits=8, sample="u8"),
    Raster(offset=0, length=4, height=2, width=2, channels=1, bits=8, sample="nope"),
    Raster(offset=0, length=8, height=2, width=2, channels=1, bits=17, sample="u16le"),
])
def test_bad_raster_geometry_is_a_codec_error(raster):
    from codec.errors import CodecError
    with pytest.raises(CodecError):
        layouts.unpack(raster, bytes(raster.length if raster.length > 0 else 0))


def test_element_size_and_shuffled():
    def raster(sample):
        return Raster(offset=0, length=4, height=1, width=1, channels=1, bits=8, sample=sample)
    assert layouts.element_size(raster("f32be")) == 4 and "f32be" in layouts.SHUFFLED
    assert layouts.element_size(raster("dpx10a_be")) == 4 and "dpx10a_be" not in layouts.SHUFFLED
    assert layouts.element_size(raster("u16le")) == 2
    assert layouts.element_size(raster("u8")) == 1


# ---------------------------------------------------------------- writer variants

def dpx_cases():
    for bits, packing in [(8, 0), (10, 0), (10, 1), (10, 2), (12, 0), (12, 1), (12, 2), (16, 0)]:
        for big_endian in (True, False):
            for channels in (1, 3, 4):
                yield pytest.param(bits, packing, big_endian, channels,
                                   id=f"dpx{bits}-p{packing}-{'be' if big_endian else 'le'}-c{channels}")


@pytest.mark.parametrize("bits, packing, big_endian, channels", list(dpx_cases()))
def test_dpx(bits, packing, big_endian, channels):
    array = image((11, 13, channels), np.uint8 if bits == 8 else np.uint16, bits=bits,
                  salt=bits)
    data = samples.write_dpx(array, bits=bits, packing=packing, big_endian=big_endian)
    assert data[:4] == (b"SDPX" if big_endian else b"XPDS")
    sample = samples.dpx.sample_layout(bits=bits, packing=packing, channels=channels,
                                       big_endian=big_endian)
    [raster] = check_file(data, "dpx", [(array, sample)])
    assert (raster.offset, raster.bits, raster.channels) == (2048, bits, channels)


def test_dpx_one_channel_10bit_keeps_first_pixel_in_the_low_field():
    # FFmpeg (read10in32_gray) and libdpx (one-channel swap) agree on this order
    data = samples.write_dpx(np.array([[1, 2, 3]], np.uint16), bits=10, packing=1)
    assert data[2048:2052].hex() == "00c02004"
    data = samples.write_dpx(np.array([[[1, 2, 3]]], np.uint16), bits=10, packing=1)
    assert data[2048:2052].hex() == "0040200c"


def test_dpx_nonzero_padding_bits_do_not_crash():
    array = image((4, 6, 3), np.uint16, bits=10)
    data = bytearray(samples.write_dpx(array, bits=10, packing=1))
    data[2048 + 3] |= 0x03                          # the two method-A padding bits
    [raster] = parse(bytes(data)).rasters
    values = layouts.unpack(raster, bytes(data))
    np.testing.assert_array_equal(values, array)
    assert layouts.pack(raster, values) != bytes(data[raster.offset:raster.end])


@pytest.mark.parametrize("big_endian", [True, False])
@pytest.mark.parametrize("channels", [1, 3])
def test_cineon(big_endian, channels):
    array = image((9, 10, channels), np.uint16, bits=10)
    data = samples.write_cineon(array, big_endian=big_endian)
    check_file(data, "cineon", [(array, "dpx10a_" + ("be" if big_endian else "le"))])


def tiff_cases():
    for dtype in ("u1", "u2", "i2", "f2", "f4"):
        for tiles in (None, (16, 16)):
            for planar in (False, True):
                for big_endian in (False, True):
                    yield pytest.param(dtype, tiles, planar, big_endian,
                                       id=f"{dtype}-{'tiles' if tiles else 'strips'}-"
                                          f"{'planar' if planar else 'chunky'}-"
                                          f"{'be' if big_endian else 'le'}")


def tiff_sample(dtype, big_endian):
    dtype = np.dtype(dtype)
    stem = {"u": "u", "i": "i", "f": "f"}[dtype.kind] + str(8 * dtype.itemsize)
    return stem if dtype.itemsize == 1 else stem + ("be" if big_endian else "le")


def tiff_pieces(array, *, tiles, planar, rows):
    """The arrays the reader should find, in file order."""
    planes = [array[:, :, [p]] for p in range(array.shape[2])] if planar else [array]
    if tiles is None:
        return [plane for plane in planes]          # contiguous strips merge
    width, length = tiles
    pieces = []
    for plane in planes:
        for y in range(0, array.shape[0], length):
            for x in range(0, array.shape[1], width):
                tile = np.zeros((length, width, plane.shape[2]), plane.dtype)
                part = plane[y:y + length, x:x + width]
                tile[:part.shape[0], :part.shape[1]] = part
                pieces.append(tile)
    return pieces


@pytest.mark.parametrize("dtype, tiles, planar, big_endian", list(tiff_cases()))
@pytest.mark.parametrize("bigtiff", [False, True], ids=["classic", "bigtiff"])
def test_tiff(dtype, tiles, planar, big_endian, bigtiff):
    array = image((37, 21, 3), dtype)
    data = samples.write_tiff(array, tiles=tiles, planar=planar, big_endian=big_endian,
                              bigtiff=bigtiff, rows_per_strip=8)
    sample = tiff_sample(dtype, big_endian)
    pieces = tiff_pieces(array, tiles=tiles, planar=planar, rows=8)
    check_file(data, "tiff", [(piece, sample) for piece in pieces])


def test_tiff_separated_strips_are_one_raster_each():
    array = image((20, 9, 1), np.uint16)
    data = samples.write_tiff(array, rows_per_strip=6, gap=2)
    rasters = check_file(data, "tiff", [(array[y:y + 6], "u16le") for y in range(0, 20, 6)])
    assert [r.height for r in rasters] == [6, 6, 6, 2]


def test_tiff_pages_all_found():
    first, second = image((8, 8, 3), np.uint8), image((5, 6, 1), np.uint8, salt=1)
    data = samples.write_tiff([first, second], tiles=None)
    check_file(data, "tiff", [(first, "u8"), (second, "u8")])


def test_tiff_writer_is_read_by_tifffile():
    tifffile = pytest.importorskip("tifffile", reason="tifffile cross-checks the writer")
    array = image((37, 21, 3), np.uint16)
    for options in ({}, {"tiles": (16, 16)}, {"planar": True}, {"bigtiff": True},
                    {"big_endian": True, "tiles": (16, 32), "planar": True}):
        pixels = tifffile.imread(io.BytesIO(samples.write_tiff(array, **options)))
        if options.get("planar"):
            pixels = np.moveaxis(pixels, 0, -1)
        np.testing.assert_array_equal(pixels, array)


def test_tiff_compressed_page_is_not_modelled():
    data = bytearray(samples.write_tiff(image((8, 8, 1), np.uint8)))
    at = data.index(bytes.fromhex("0301" "0300" "01000000" "0100"))   # Compression = 1
    data[at + 8] = 5                                                  # LZW
    assert parse(bytes(data)) is None


# ---------------------------------------------------------------- damage

def damaged_sources():
    yield "dpx", samples.write_dpx(image((6, 7, 3), np.uint16, bits=10), bits=10)
    yield "dpx-le", samples.write_dpx(image((6, 7, 1), np.uint16, bits=12), bits=12,
                                      packing=0, big_endian=False)
    yield "cineon", samples.write_cineon(image((6, 7, 3), np.uint16, bits=10))
    yield "tiff", samples.write_tiff(image((16, 16, 3), np.uint8), tiles=(16, 16))
    yield "bigtiff", samples.write_tiff(image((9, 7, 1), np.int16), bigtiff=True,
                                        big_endian=True, rows_per_strip=2)


DAMAGED = dict(damaged_sources())


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_truncated_files_never_raise(name):
    data = DAMAGED[name]
    for cut in sorted({0, 1, 3, 4, 7, 8, 16, 100, 768, 780, 800, 2047, 2048}
                      | set(range(0, len(data), max(1, len(data) // 97)))):
        if cut < len(data):
            assert_sound(data[:cut])


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_corrupted_headers_never_raise(name):
    data, generator = DAMAGED[name], rng(len(DAMAGED[name]))
    header = min(len(data), 2048)
    for _ in range(300):
        damaged = bytearray(data)
        for at in generator.integers(0, header, size=generator.integers(1, 8)):
            damaged[at] = generator.integers(0, 256)
        assert_sound(bytes(damaged))


def assert_sound(data):
    """Every reader answers None or rasters that fit the file; parse never raises."""
    for reader in READERS:
        rasters = reader.read(memoryview(data))
        assert rasters is None or isinstance(rasters, list)
    parsed = parse(data)
    if parsed is not None:
        for raster in parsed.rasters:
            values = layouts.unpack(raster, data)
            assert values.shape == (raster.height, raster.width, raster.channels)


@settings(max_examples=200, deadline=None)
@given(prefix=st.sampled_from([b"SDPX", b"XPDS", b"\x80\x2a\x5f\xd7", b"II*\0", b"MM\0*",
                               b"II+\0"]),
       body=st.binary(max_size=3000))
def test_random_bytes_after_a_magic_never_raise(prefix, body):
    assert_sound(prefix + body)
