"""Format readers, sample layouts and sample writers of the image codec.

Every sample-writer variant must be found by its reader as exactly the
rasters the writer laid out; ``unpack`` must give back the written samples and
``pack`` the written bytes; and the whole file must come back bit-exact from
``codec.decode(codec.encode(...))`` with its rasters pixel-coded.  Damaged
files must give ``None`` or sound rasters, never an exception.  Where an
independent reader is installed (tifffile, pydicom, astropy), it must read
the writers' files too.
"""
import io
from dataclasses import replace

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings, strategies as st

import codec
from codec import container, layouts
from codec.errors import CodecError
from codec.formats import HEAD, READERS, candidates, dpx, parse, read_with, samples
from codec.pyx import lossless
from codec.raster import Raster

SEED = 20240517


def rng(*salt):
    return np.random.default_rng([SEED, *salt])


def image(shape, dtype, *, bits=None, salt=0):
    """A seeded image: a smooth picture plus noise, so pixel coding has something to do."""
    dtype = np.dtype(dtype)
    generator = rng(salt, *shape)
    y, x = np.mgrid[0:shape[0], 0:shape[1]]
    smooth = (np.sin(x / 5.0) + np.cos(y / 7.0)) / 4 + 0.5            # 0..1
    smooth = smooth.reshape(smooth.shape + (1,) * (len(shape) - 2))
    if dtype.kind == "f":
        values = smooth * 100 + generator.standard_normal(shape)
        values.flat[0] = np.inf                                     # specials survive too
        return values.astype(dtype)
    info = np.iinfo(dtype)
    low, high = (0, (1 << bits) - 1) if bits else (max(info.min, -30000), min(info.max, 60000))
    noise = generator.integers(0, max(2, (high - low) // 16), size=shape)
    values = low + smooth * (high - low) * 0.9 + noise
    return np.clip(values, low, high).astype(dtype)


def unpacked(array, sample, bits):
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
        shifted = array.astype(np.int64) + (1 << (bits - 1))
        return (shifted & ((1 << bits) - 1)).astype(np.uint8 if bits <= 8 else np.uint16)
    return array


def gathered(raster, data):
    """The raster's rows back to back, as the container hands them to the layouts."""
    row = layouts.row_bytes(raster.sample, raster.width * raster.channels)
    stride = raster.row_stride or raster.length // raster.height
    rows = b"".join(data[raster.offset + i * stride:raster.offset + i * stride + row]
                    for i in range(raster.height))
    return replace(raster, offset=0, length=len(rows), row_stride=0), rows


def check_file(data, kind, expected):
    """``data`` parses as ``kind`` into rasters holding ``expected`` (array, sample, bits)."""
    parsed = parse(data)
    assert parsed is not None and parsed.kind == kind
    found = [(r.sample, r.bits) for r in parsed.rasters]
    assert found == [(sample, bits) for _, sample, bits in expected]
    for raster, (array, sample, bits) in zip(parsed.rasters, expected):
        values = layouts.unpack(raster, data)
        want = unpacked(array, sample, bits)
        assert values.shape == (raster.height, raster.width, raster.channels) == want.shape
        assert values.dtype == want.dtype
        np.testing.assert_array_equal(values, want)
        compact, rows = gathered(raster, data)
        assert layouts.pack(compact, values) == rows
        if not raster.row_stride:
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
        dtype = np.uint8 if bits <= 8 else np.uint16 if bits <= 16 else np.uint32 if bits <= 32 else np.uint64
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


@pytest.mark.parametrize("sample", ["dpx10p_be", "dpx10p_le", "dpx12p_be", "dpx12p_le"])
def test_bit_run_kernels_agree_with_the_layouts(sample):
    # the kernels convert packed DPX (samples running on through words) as the numpy layouts do: the
    # samples, whether packing them again gives every word back, and the packed words (bytes between
    # rows kept)
    generator = rng(len(sample), sample.endswith("be"))
    layout = layouts.LAYOUTS[sample]
    for bits in (layout.max_bits, layout.max_bits - 3):
        for count in [*range(1, 41), 97, 5994]:
            row = layout.row_bytes(count)
            stride = row + (4 if count % 5 == 0 else 0)
            raster = Raster(offset=0, length=3 * row, height=3, width=count, channels=1, bits=bits, sample=sample)
            run = layouts.bit_run(raster)
            assert run is not None
            for clean in (True, False):
                data = generator.integers(0, 256, 3 * stride, dtype=np.uint8).reshape(3, stride)
                if clean:
                    values = generator.integers(0, 1 << bits, (3, count, 1)).astype(np.uint16)
                    data[:, :row] = np.frombuffer(layouts.pack(raster, values), dtype=np.uint8).reshape(3, row)
                expected = layouts.unpack(raster, data[:, :row].tobytes())
                out = np.zeros(3 * count, dtype=np.uint16)
                exact = lossless.unpack_bit_runs(data.reshape(-1), 3, count, stride, *run, bits, out, 2)
                np.testing.assert_array_equal(out.reshape(3, count, 1), expected)
                repacked = layouts.pack(raster, expected)
                assert exact == (repacked == data[:, :row].tobytes())
                back = np.full(3 * stride, 0xAB, dtype=np.uint8)
                lossless.pack_bit_runs(out, 3, count, stride, *run, bits, back, 2)
                assert back.reshape(3, stride)[:, :row].tobytes() == repacked
                assert (back.reshape(3, stride)[:, row:] == 0xAB).all()


def test_bit_run_kernels_refuse_rows_that_do_not_fit():
    out, data = np.zeros(30, dtype=np.uint16), np.zeros(64, dtype=np.uint8)
    with pytest.raises(ValueError, match="rows do not fit"):
        lossless.unpack_bit_runs(data, 3, 10, 12, False, 10, 10, out)          # a row of 10 x 10 bits is 16 bytes
    with pytest.raises(ValueError, match="rows do not fit"):
        lossless.unpack_bit_runs(data, 5, 10, 16, False, 10, 10, out)          # 80 bytes of rows in 64
    with pytest.raises(ValueError, match="rows do not fit"):
        lossless.pack_bit_runs(out[:20], 3, 10, 16, False, 10, 10, data)       # 30 samples asked of 20
    with pytest.raises(ValueError, match="at most the width"):
        lossless.unpack_bit_runs(data, 3, 10, 16, False, 10, 12, out)
    assert layouts.bit_run(Raster(offset=0, length=0, height=1, width=4, channels=3, bits=10,
                                  sample="dpx10a_be")) is None                 # filled: one word a sample


@pytest.mark.parametrize("sample", ["i16le", "i16be"])
def test_signed_samples_outside_their_bits_are_coded_with_their_stray_bits(sample):
    # 12-bit signed samples with one in a hundred outside that range (other bits set above them)
    generator = rng(len(sample), sample.endswith("le"))
    values = image((128, 160), np.uint16, bits=11).astype(np.int16).ravel() - 1024
    outside = generator.choice(values.size, size=values.size // 100, replace=False)
    values[outside] = generator.integers(-32768, 32767, size=outside.size)
    data = b"HEAD" + values.astype("<i2" if sample.endswith("le") else ">i2").tobytes() + b"TAIL"
    raster = Raster(offset=4, length=values.size * 2, height=128, width=160, channels=1, bits=12, sample=sample)
    encoded = container.encode(data, kind="test", rasters=[raster], level=2, threads=2)
    assert container.decode(encoded, threads=2) == data
    assert [method for _, method, _ in container.read_header(encoded).rasters] == [container.STRAY]
    assert len(encoded) < len(container.encode(data, kind="test", rasters=[], level=2, threads=2))  # < verbatim


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

    with pytest.raises(CodecError):
        layouts.unpack(raster, bytes(raster.length if raster.length > 0 else 0))


def test_element_size_and_shuffled():
    def raster(sample):
        return Raster(offset=0, length=4, height=1, width=1, channels=1, bits=8, sample=sample)
    assert layouts.element_size(raster("f32be")) == 4 and "f32be" in layouts.SHUFFLED
    assert layouts.element_size(raster("dpx10a_be")) == 4 and "dpx10a_be" not in layouts.SHUFFLED
    assert layouts.element_size(raster("u16le")) == 2
    assert layouts.element_size(raster("u8")) == 1



@pytest.mark.parametrize("sample", ["dpx10p_be", "dpx12p_le", "dpx10a_le", "u16be", "i16le"])
def test_fewer_bits_than_the_layout_holds_never_raise(sample):
    for bits in range(1, layouts.LAYOUTS[sample].max_bits + 1):
        raster = Raster(offset=0, length=layouts.row_bytes(sample, 16) * 2, height=2, width=16,
                        channels=1, bits=bits, sample=sample)
        values = layouts.unpack(raster, bytes(range(256))[:raster.length])
        assert values.max() < 1 << bits
        assert len(layouts.pack(raster, values)) == raster.length


def test_row_stride_skips_the_bytes_between_rows():
    raster = Raster(offset=0, length=2 * 7 + 4, height=3, width=2, channels=1, bits=16,
                    sample="u16be", row_stride=7)
    data = bytes.fromhex("0001 0002 ffffff 0003 0004 eeeeee 0005 0006".replace(" ", ""))
    assert layouts.unpack(raster, data).ravel().tolist() == [1, 2, 3, 4, 5, 6]
    assert layouts.pack(raster, layouts.unpack(raster, data)) == data.replace(
        b"\xff\xff\xff", bytes(3)).replace(b"\xee\xee\xee", bytes(3))


# ---------------------------------------------------------------- writer variants
#
# Each variant: (kind, file bytes, [(array, sample, bits) per raster in file order]).

def dpx_variant(bits, packing, big_endian, channels):
    array = image((11, 13, channels), np.uint8 if bits == 8 else np.uint16, bits=bits)
    data = samples.write_dpx(array, bits=bits, packing=packing, big_endian=big_endian)
    sample = dpx.sample_layout(bits=bits, packing=packing, channels=channels,
                               big_endian=big_endian)
    return "dpx", data, [(array, sample, bits)]


def cineon_variant(big_endian, channels):
    array = image((9, 10, channels), np.uint16, bits=10)
    return "cineon", samples.write_cineon(array, big_endian=big_endian), [
        (array, "dpx10a_" + ("be" if big_endian else "le"), 10)]


def tiff_variant(dtype, tiles, planar, big_endian, bigtiff):
    array = image((37, 21, 3), dtype)
    data = samples.write_tiff(array, tiles=tiles, planar=planar, big_endian=big_endian,
                              bigtiff=bigtiff, rows_per_strip=8)
    dtype = np.dtype(dtype)
    sample = dtype.kind + str(8 * dtype.itemsize)
    sample += "" if dtype.itemsize == 1 else "be" if big_endian else "le"
    planes = [array[:, :, [p]] for p in range(3)] if planar else [array]
    # tiles one after another in the file are one raster, tiles stacked (per plane)
    pieces = planes if tiles is None else [np.concatenate(list(tiled(plane, tiles))) for plane in planes]
    return "tiff", data, [(piece, sample, 8 * dtype.itemsize) for piece in pieces]


def tiled(plane, tiles):
    width, length = tiles
    for y in range(0, plane.shape[0], length):
        for x in range(0, plane.shape[1], width):
            tile = np.zeros((length, width, plane.shape[2]), plane.dtype)
            part = plane[y:y + length, x:x + width]
            tile[:part.shape[0], :part.shape[1]] = part
            yield tile


def dicom_variant(dtype, bits_stored, channels, frames, planar, syntax):
    bits = bits_stored or 8 * np.dtype(dtype).itemsize
    if np.dtype(dtype).kind == "i":
        shape = (frames, 7, 9, channels)
        stack = image(shape, np.int16).astype(np.int64) >> (16 - bits)
        stack = stack.astype(np.int16)
    else:
        stack = image((frames, 7, 9, channels), dtype, bits=bits)
    big_endian, implicit = syntax == "explicit-be", syntax == "implicit-le"
    data = samples.write_dicom([frame for frame in stack] if frames > 1 else stack[0],
                               big_endian=big_endian, implicit=implicit, planar=planar,
                               bits_stored=bits_stored)
    sample = dicom_sample(dtype, big_endian)
    pieces = [frame[:, :, [p]] for frame in stack for p in range(channels)] if planar \
        else [np.concatenate(list(stack))]     # the frames one below the other: one raster
    return "dicom", data, [(piece, sample, bits) for piece in pieces]


def dicom_sample(dtype, big_endian):
    dtype = np.dtype(dtype)
    if dtype.itemsize == 1:
        return "u8"
    return f"{dtype.kind}16{'be' if big_endian else 'le'}"


def fits_variant(dtype, planes, extension):
    shape = (planes, 7, 9) if planes else (7, 9)
    array = image(shape + (1,), dtype)[..., 0]
    data = samples.write_fits(None if extension else array,
                              extensions=[array] if extension else ())
    sample = {"u1": "u8", "i2": "i16be", "u2": "i16be", "i4": "i32be", "f4": "f32be", "i8": "i64be",
              "f8": "f64be"}[
        np.dtype(dtype).str[1:]]
    stacked = array.reshape(-1, 9)      # the planes one below the other: one raster
    return "fits", data, [(stacked, sample, 8 * array.dtype.itemsize)]


def exr_variant(types, origin=(0, 0)):
    names = "RGBAZ"[:len(types)]
    planes = {name: image((6, 11, 1), dtype, salt=index)[..., 0]
              for index, (name, dtype) in enumerate(zip(names, types))}
    data = samples.write_exr(planes, origin=origin)
    ordered = sorted(planes)
    runs = []                                        # same-type channel runs, file order
    for name in ordered:
        if runs and runs[-1][0].dtype == planes[name].dtype:
            runs[-1].append(planes[name])
        else:
            runs.append([planes[name]])
    expected = []
    for run in runs:                                 # each run is one strided raster
        array = np.concatenate(run, axis=1)
        sample = {"f2": "f16le", "f4": "f32le", "u4": "u32le"}[array.dtype.str[1:]]
        expected.append((array, sample, 8 * array.dtype.itemsize))
    return "exr", data, expected


def pnm_variant(dtype, maxval, channels, pam=False, images=1):
    bits = (maxval or 0).bit_length() or 8 * np.dtype(dtype).itemsize
    arrays = [image((5 + i, 7, channels), dtype, bits=bits, salt=i) for i in range(images)]
    data = samples.write_pnm(arrays if images > 1 else arrays[0], maxval, pam=pam)
    sample = "u8" if bits <= 8 else "u16be"
    return "pnm", data, [(array, sample, bits) for array in arrays]


def variants():
    for bits, packing in [(8, 0), (10, 0), (10, 1), (10, 2), (12, 0), (12, 1), (12, 2),
                          (16, 0)]:
        for big_endian in (True, False):
            for channels in (1, 3, 4):
                yield pytest.param(dpx_variant, (bits, packing, big_endian, channels),
                                   id=f"dpx{bits}-p{packing}-{order(big_endian)}-c{channels}")
    for big_endian in (True, False):
        for channels in (1, 3):
            yield pytest.param(cineon_variant, (big_endian, channels),
                               id=f"cineon-{order(big_endian)}-c{channels}")
    for dtype in ("u1", "u2", "i2", "f2", "f4", "f8"):
        for tiles in (None, (16, 16)):
            for planar in (False, True):
                for big_endian in (False, True):
                    for bigtiff in (False, True):
                        yield pytest.param(
                            tiff_variant, (dtype, tiles, planar, big_endian, bigtiff),
                            id=f"tiff-{dtype}-{'tiles' if tiles else 'strips'}-"
                               f"{'planar' if planar else 'chunky'}-{order(big_endian)}"
                               f"{'-big' if bigtiff else ''}")
    for dtype, bits_stored in [("u1", None), ("u2", None), ("u2", 12), ("i2", None),
                               ("i2", 12)]:
        for channels, planar in [(1, False), (3, False), (3, True)]:
            for frames in (1, 3):
                for syntax in ("explicit-le", "implicit-le", "explicit-be"):
                    yield pytest.param(
                        dicom_variant, (dtype, bits_stored, channels, frames, planar, syntax),
                        id=f"dicom-{dtype}{bits_stored or ''}-c{channels}"
                           f"{'-planar' if planar else ''}-f{frames}-{syntax}")
    for dtype in ("u1", "i2", "u2", "i4", "f4", "i8", "f8"):
        for planes in (0, 3):
            for extension in (False, True):
                yield pytest.param(fits_variant, (dtype, planes, extension),
                                   id=f"fits-{dtype}-{'cube' if planes else 'plane'}"
                                      f"{'-ext' if extension else ''}")
    for types, origin in [(("f2", "f2", "f2"), (0, 0)), (("f2",) * 4, (5, -3)),
                          (("f4", "f4"), (0, 0)), (("u4",), (0, 0)),
                          (("f4", "f2", "f2"), (0, 0))]:
        yield pytest.param(exr_variant, (types, origin), id=f"exr-{'-'.join(types)}")
    for dtype, maxval in [("u1", None), ("u1", 100), ("u2", None), ("u2", 1023), ("u2", 300)]:
        for channels in (1, 3):
            yield pytest.param(pnm_variant, (dtype, maxval, channels),
                               id=f"pnm-{dtype}-{maxval}-c{channels}")
    for channels in (1, 2, 4):
        yield pytest.param(pnm_variant, ("u1", None, channels, True), id=f"pam-c{channels}")
    yield pytest.param(pnm_variant, ("u2", 4095, 3, False, 3), id="pnm-three-images")


def order(big_endian):
    return "be" if big_endian else "le"


VARIANTS = list(variants())


@pytest.mark.parametrize("build, options", VARIANTS)
def test_reader_finds_what_the_writer_wrote(build, options):
    kind, data, expected = build(*options)
    check_file(data, kind, expected)


@pytest.mark.parametrize("build, options", VARIANTS)
def test_codec_round_trip_pixel_codes_every_raster(build, options):
    kind, data, expected = build(*options)
    encoded = codec.encode(data)
    assert codec.decode(encoded) == data
    summary = codec.info(encoded)
    assert summary["format"] == kind
    methods = [raster["method"] for raster in summary["rasters"]]
    assert methods == ["shuffled" if sample in layouts.SHUFFLED else "pixels"
                       for _, sample, _ in expected]


# ---------------------------------------------------------------- format details

def test_dpx_one_channel_10bit_keeps_first_pixel_in_the_low_field():
    # FFmpeg (read10in32_gray) and libdpx (its one-channel swap) read this order
    data = samples.write_dpx(np.array([[1, 2, 3]], np.uint16), bits=10, packing=1)
    assert data[2048:2052].hex() == "00c02004"
    data = samples.write_dpx(np.array([[[1, 2, 3]]], np.uint16), bits=10, packing=1)
    assert data[2048:2052].hex() == "0040200c"


def test_dpx_header_fields_sit_where_readers_look():
    data = samples.write_dpx(image((4, 6, 3), np.uint16, bits=10), bits=10, packing=1)
    assert len(data) == 2048 + 4 * 6 * 4
    assert data[8:12] == b"V2.0" and int.from_bytes(data[16:20], "big") == len(data)
    assert int.from_bytes(data[770:772], "big") == 1                        # elements
    assert (int.from_bytes(data[772:776], "big"), int.from_bytes(data[776:780], "big")) == (6, 4)
    assert (data[800], data[803], int.from_bytes(data[804:806], "big")) == (50, 10, 1)
    assert int.from_bytes(data[808:812], "big") == 2048                     # data offset


def dpx_with_stray_padding_bits(shape, every: int) -> tuple[bytes, np.ndarray]:
    """A filled 10-bit DPX whose every ``every``-th word has its two padding bits set."""
    array = image(shape, np.uint16, bits=10)
    data = np.frombuffer(samples.write_dpx(array, bits=10, packing=1), dtype=np.uint8).copy()
    data[2048 + 3::4 * every] |= 0x03                # the low byte of a big-endian method-A word
    return data.tobytes(), array


def test_dpx_nonzero_padding_bits_are_kept_beside_the_pixels():
    data, array = dpx_with_stray_padding_bits((64, 96, 3), every=7)
    [raster] = parse(data).rasters
    values = layouts.unpack(raster, data)
    np.testing.assert_array_equal(values, array)
    assert layouts.pack(raster, values) != data[raster.offset:raster.end]
    encoded = codec.encode(data)
    assert codec.decode(encoded) == data
    assert [r["method"] for r in codec.info(encoded)["rasters"]] == ["pixels+stray-bits"]
    assert len(encoded) < len(codec.encode(data, level=0))          # better than generic compression


def test_dpx_padding_bits_that_cost_more_than_a_small_share_are_stored_verbatim():
    data, array = dpx_with_stray_padding_bits((4, 6, 3), every=1)   # 18 words, every one of them stray
    encoded = codec.encode(data)
    assert codec.decode(encoded) == data
    assert codec.info(encoded)["rasters"] == []


@pytest.mark.parametrize("payload, problem", [
    (b"\x01\x00", "truncated"),
    ((100).to_bytes(8, "little") + bytes(20), "truncated"),
    ((9).to_bytes(8, "little") + zstandard.ZstdCompressor().compress(bytes(10)), "wrong length"),
    ((4).to_bytes(8, "little") + b"junk" + bytes(20), "corrupt"),
])
def test_damaged_stray_bits_are_a_codec_error(payload, problem):
    with pytest.raises(CodecError, match=problem):
        container.split_stray(memoryview(payload), 12)


def test_dpx_second_image_element_is_its_own_raster():
    first = image((4, 6, 3), np.uint16, bits=10)
    second = image((4, 6, 1), np.uint16, bits=10, salt=1)
    data = bytearray(samples.write_dpx(first, bits=10, packing=1))
    extra = samples.write_dpx(second, bits=10, packing=1)[2048:]
    data[770:772] = (2).to_bytes(2, "big")
    record = bytearray(data[dpx.ELEMENTS_AT:dpx.ELEMENTS_AT + dpx.ELEMENT_SIZE])
    record[20] = 6                                  # descriptor: luma
    record[28:32] = len(data).to_bytes(4, "big")    # data offset
    data[dpx.ELEMENTS_AT + dpx.ELEMENT_SIZE:dpx.ELEMENTS_AT + 2 * dpx.ELEMENT_SIZE] = record
    check_file(bytes(data) + extra, "dpx",
               [(first, "dpx10a_be", 10), (second, "dpx10a_rev_be", 10)])


def test_dpx_unmodelled_element_stays_verbatim():
    data = bytearray(samples.write_dpx(image((4, 6, 3), np.uint16, bits=10), bits=10))
    data[dpx.ELEMENTS_AT + 27] = 1                  # encoding: RLE
    assert parse(bytes(data)) is None


def test_tiff_separated_strips_are_one_raster_each():
    array = image((20, 9, 1), np.uint16)
    data = samples.write_tiff(array, rows_per_strip=6, gap=2)
    rasters = check_file(data, "tiff", [(array[y:y + 6], "u16le", 16) for y in range(0, 20, 6)])
    assert [r.height for r in rasters] == [6, 6, 6, 2]


def test_tiff_one_row_strips_evenly_spaced_are_one_strided_raster():
    array = image((12, 9, 1), np.uint16)
    data = samples.write_tiff(array, rows_per_strip=1, gap=3)
    (raster,) = check_file(data, "tiff", [(array, "u16le", 16)])
    assert (raster.height, raster.row_stride) == (12, 9 * 2 + 3)
    assert codec.decode(codec.encode(data)) == data
    assert [r["method"] for r in codec.info(codec.encode(data))["rasters"]] == ["pixels"]


def test_tiff_pages_all_found():
    first, second = image((8, 8, 3), np.uint8), image((5, 6, 1), np.uint8, salt=1)
    data = samples.write_tiff([first, second])
    check_file(data, "tiff", [(first, "u8", 8), (second, "u8", 8)])


def test_tiff_compressed_page_is_not_modelled():
    data = bytearray(samples.write_tiff(image((8, 8, 1), np.uint8)))
    at = data.index(bytes.fromhex("0301" "0300" "01000000" "0100"))   # Compression = 1
    data[at + 8] = 5                                                  # LZW
    assert parse(bytes(data)) is None


def test_dicom_bits_stored_only_when_samples_fit():
    array = image((6, 8, 1), np.uint16, bits=12)
    array[0, 0] = 5000                              # does not fit 12 bits
    stored_16 = bytes.fromhex("2800" "0101") + b"US" + bytes.fromhex("0200" "1000")
    data = samples.write_dicom(array, bits_stored=16)
    data = data.replace(stored_16, stored_16[:-2] + bytes.fromhex("0c00"))   # claim 12
    assert [r.bits for r in parse(data).rasters] == [16]
    assert codec.decode(codec.encode(data)) == data


def test_dicom_encapsulated_pixel_data_is_not_modelled():
    data = samples.write_dicom(image((4, 4, 1), np.uint8))
    data = data.replace(b"1.2.840.10008.1.2.1\0", b"1.2.840.10008.1.2.4.50")   # JPEG baseline
    assert parse(data) is None


def test_exr_mixed_types_describe_every_run_as_interleaved_rasters():
    kind, data, expected = exr_variant(("f4", "f2", "f2", "f2"))
    halves, floats = check_file(data, kind, expected)
    block = 8 + 11 * 4 + 3 * 11 * 2                 # y, size, three HALF rows (A, B, G), an R FLOAT row
    assert (halves.sample, halves.width, halves.row_stride) == ("f16le", 3 * 11, block)
    assert (floats.sample, floats.width, floats.row_stride) == ("f32le", 11, block)


def test_exr_decreasing_line_order_is_one_raster_in_file_order():
    planes = {"Y": image((5, 6, 1), np.float16)[..., 0]}
    data = bytearray(samples.write_exr(planes))
    # reverse the blocks in the file (as LINE_ORDER DECREASING_Y writers lay them out)
    block = 8 + 6 * 2                               # y, size, six halves
    table = len(data) - 5 * block - 5 * 8
    offsets = np.frombuffer(bytes(data[table:table + 40]), "<u8")
    assert offsets.tolist() == [table + 40 + i * block for i in range(5)]
    blocks = [bytes(data[o:o + block]) for o in offsets]
    data[table + 40:] = b"".join(reversed(blocks))
    new = [table + 40 + (4 - i) * block for i in range(5)]
    data[table:table + 40] = np.array(new, "<u8").tobytes()
    check_file(bytes(data), "exr", [(planes["Y"][::-1], "f16le", 16)])


def test_tiles_one_after_another_are_one_raster_and_tiles_apart_stay_apart():
    array = image((40, 37, 3), np.uint16)           # 3 x 3 tiles of 16 x 16, the last ones padded
    together = samples.write_tiff(array, tiles=(16, 16))
    assert [(r.height, r.width) for r in parse(together).rasters] == [(9 * 16, 16)]
    apart = samples.write_tiff(array, tiles=(16, 16), gap=4)
    assert [(r.height, r.width) for r in parse(apart).rasters] == [(16, 16)] * 9
    for data in (together, apart):
        assert codec.decode(codec.encode(data)) == data


def test_a_cut_fits_cube_stacks_its_whole_planes_and_keeps_the_rest_verbatim():
    cube = image((5, 7, 9, 1), np.uint16)[..., 0]
    data = samples.write_fits(cube)
    [whole] = parse(data).rasters
    assert (whole.height, whole.width) == (5 * 7, 9)
    cut = data[:whole.offset + 2 * 7 * 9 * 2 + 50]     # two planes and part of the third
    [two] = parse(cut).rasters
    assert (two.offset, two.height, two.width) == (whole.offset, 2 * 7, 9)
    for data in (data, cut):
        assert codec.decode(codec.encode(data)) == data


def test_writers_are_read_by_independent_readers():
    tifffile = pytest.importorskip("tifffile", reason="tifffile cross-checks the TIFF writer")
    pydicom = pytest.importorskip("pydicom", reason="pydicom cross-checks the DICOM writer")
    astropy_fits = pytest.importorskip("astropy.io.fits",
                                       reason="astropy cross-checks the FITS writer")
    array = image((37, 21, 3), np.uint16)
    for options in ({}, {"tiles": (16, 16)}, {"planar": True}, {"bigtiff": True},
                    {"big_endian": True, "tiles": (16, 32), "planar": True}):
        pixels = tifffile.imread(io.BytesIO(samples.write_tiff(array, **options)))
        np.testing.assert_array_equal(
            np.moveaxis(pixels, 0, -1) if options.get("planar") else pixels, array)
    for options in ({}, {"implicit": True}, {"big_endian": True}, {"planar": True}):
        dataset = pydicom.dcmread(io.BytesIO(samples.write_dicom(array, **options)))
        np.testing.assert_array_equal(dataset.pixel_array, array)
    signed = image((3, 7, 9), np.int16)
    frames = pydicom.dcmread(io.BytesIO(samples.write_dicom(list(signed), bits_stored=16)))
    np.testing.assert_array_equal(frames.pixel_array, signed)
    cube = array[:, :, 0].reshape(3, 7, 37)
    data = samples.write_fits(cube, extensions=[array[..., 1]])
    with astropy_fits.open(io.BytesIO(data)) as hdus:
        hdus.verify("exception")
        np.testing.assert_array_equal(hdus[0].data, cube)
        np.testing.assert_array_equal(hdus[1].data, array[..., 1])


# ---------------------------------------------------------------- damage

def damaged_sources():
    for build, options in [(dpx_variant, (10, 1, True, 3)), (dpx_variant, (12, 0, False, 1)),
                           (cineon_variant, (True, 3)),
                           (tiff_variant, ("u1", (16, 16), False, False, False)),
                           (tiff_variant, ("i2", None, True, True, True)),
                           (dicom_variant, ("u2", 12, 1, 3, False, "explicit-le")),
                           (dicom_variant, ("i2", None, 3, 1, True, "implicit-le")),
                           (fits_variant, ("i2", 3, True)),
                           (exr_variant, (("f2", "f2", "f2"),)),
                           (pnm_variant, ("u2", 1023, 3)),
                           (pnm_variant, ("u1", None, 4, True))]:
        kind, data, _ = build(*options)
        yield f"{kind}-{len(data)}", data


DAMAGED = dict(damaged_sources())


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_truncated_files_never_raise(name):
    data = DAMAGED[name]
    for cut in sorted({0, 1, 3, 4, 7, 8, 16, 100, 128, 132, 768, 780, 2047, 2048, 2880}
                      | set(range(0, len(data), max(1, len(data) // 97)))):
        if cut < len(data):
            assert_sound(data[:cut])


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_corrupted_headers_never_raise(name):
    data, generator = DAMAGED[name], rng(len(DAMAGED[name]))
    header = min(len(data), 2880)
    for attempt in range(300):
        damaged = bytearray(data)
        for at in generator.integers(0, header, size=generator.integers(1, 8)):
            damaged[at] = generator.integers(0, 256)
        assert_sound(bytes(damaged), codec_too=attempt % 30 == 0)


def assert_sound(data, codec_too=False):
    """Every reader answers None or rasters that fit the file; parse never raises, and the
    readers it skips for want of their signature decline the file."""
    for reader in READERS:
        rasters = read_with(reader, memoryview(data))
        assert rasters is None or isinstance(rasters, list)
        assert rasters is None or reader in candidates(data[:HEAD])
    parsed = parse(data)
    if parsed is not None:
        for raster in parsed.rasters:
            values = layouts.unpack(raster, data)
            assert values.shape == (raster.height, raster.width, raster.channels)
    if codec_too:
        assert codec.decode(codec.encode(data)) == data


MAGICS = [b"SDPX", b"XPDS", b"\x80\x2a\x5f\xd7", b"II*\0", b"MM\0*", b"II+\0\x08\0\0\0",
          bytes(128) + b"DICM", b"SIMPLE  =                    T", b"\x76\x2f\x31\x01\x02\0\0\0",
          b"P5\n", b"P6 3 2 255\n", b"P7\nWIDTH 2\n"]


@settings(max_examples=300, deadline=None)
@given(prefix=st.sampled_from(MAGICS), body=st.binary(max_size=3000))
def test_random_bytes_after_a_magic_never_raise(prefix, body):
    assert_sound(prefix + body)
