"""Property: random samples of every supported type, written as real files, come
back from ``codec.decode(codec.encode(...))`` byte for byte, pixel-coded.

Each case pairs a sample type with a format that stores it (the sample
writers of ``codec.formats.samples``); hypothesis draws the file's geometry
(1x1, 1xn, nx1, primes, up to 61 a side), its channel count and the format's
options (byte order, strips or tiles, planar, packing, frames, ...), and the
samples from a seeded generator: noise, a smooth picture, a constant, the
type's extremes, or a few levels; float samples may be any bit pattern (NaN
payloads, infinities, subnormals, -0) or a picture with specials in it.
Besides the exact round trip, the format must be recognised and every
sample must be coded: 8- and 16-bit samples as "pixels", 32-bit as
"shuffled".

    uint8           TIFF, PNM (P5/P6/PAM), DPX 8, DICOM, FITS BITPIX 8
    int8            TIFF
    uint16, 9-16 b  TIFF, PNM (maxval 2**b - 1), DICOM (BitsStored b),
                    FITS (BZERO); DPX at 10, 12 (packings 0-2) and 16; Cineon at 10
    int16           TIFF, FITS BITPIX 16, DICOM (BitsStored 12 and 16)
    float16         OpenEXR HALF, TIFF
    float32         OpenEXR FLOAT, TIFF, FITS BITPIX -32, DPX 32-bit
    uint32          OpenEXR UINT, TIFF, DICOM (BitsAllocated 32)
    int32           TIFF, FITS BITPIX 32, DICOM (BitsAllocated 32)

Channels: TIFF 1-5 (gray, gray+alpha, RGB, RGBA, RGB + 2 extra), PAM 1-5,
DPX 1, 3, 4, DICOM and Cineon 1 and 3, EXR 1-4, FITS 1-3 planes.  OpenEXR
files mixing HALF, FLOAT and UINT channels have a test of their own.
"""
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, seed, settings, strategies as st

import codec
from codec.formats import samples

SEED = 20240601
THREADS = 2
MAX_EXAMPLES = 12
PRIMES = (2, 3, 5, 7, 11, 13, 17, 31, 61)
CONTENTS = ("noise", "smooth", "constant", "extremes", "few")

sides = st.one_of(st.just(1), st.sampled_from(PRIMES), st.integers(1, 48))


@dataclass(frozen=True)
class Sample:
    """A sample type: numpy dtype and, for integers, the significant bits the values span."""
    dtype: str
    bits: int

    @property
    def name(self) -> str:
        return self.dtype + (f"-b{self.bits}" if self.bits != 8 * self.itemsize else "")

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    @property
    def method(self) -> str:
        return "shuffled" if self.itemsize >= 4 else "pixels"

    def range(self) -> tuple[int, int]:
        if np.dtype(self.dtype).kind == "i":
            return -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1
        return 0, (1 << self.bits) - 1


@dataclass(frozen=True)
class Written:
    data: bytes
    kind: str
    samples: int          # samples the codec must code (with padding, e.g. TIFF edge tiles)
    recipe: str           # how to rebuild the file, shown when an example fails

    def __repr__(self) -> str:
        return f"Written({self.kind}, {len(self.data)} bytes, {self.recipe})"


@st.composite
def pixels(draw, sample: Sample, channels):
    """(array of shape (h, w, c), recipe) with c drawn from ``channels``."""
    shape = (draw(sides), draw(sides), draw(st.sampled_from(channels)))
    content, salt = draw(st.sampled_from(CONTENTS)), draw(st.integers(0, 2**32 - 1))
    generator = np.random.default_rng([SEED, salt])
    if np.dtype(sample.dtype).kind == "f":
        array = float_samples(generator, sample.dtype, shape, content)
    else:
        array = integer_samples(generator, sample, shape, content)
    return array, f"{sample.name} {shape} {content} salt={salt}"


def wave(shape) -> np.ndarray:
    """A smooth picture in 0..1."""
    y, x, c = np.mgrid[0:shape[0], 0:shape[1], 0:shape[2]]
    return (np.sin(x / (4.0 + c)) * np.cos(y / 6.0) + 1) / 2


def integer_samples(generator, sample: Sample, shape, content: str) -> np.ndarray:
    low, high = sample.range()
    if content == "noise":
        values = generator.integers(low, high, shape, endpoint=True)
    elif content == "smooth":
        noise = generator.normal(0, 1 + (high - low) / 300, shape)
        values = low + wave(shape) * (high - low) + noise
        values = np.clip(np.rint(values), low, high).astype(np.int64)
    elif content == "constant":
        values = np.full(shape, generator.integers(low, high, endpoint=True))
    elif content == "extremes":
        values = generator.choice([low, high], shape)
    else:
        values = generator.choice(generator.integers(low, high, 3, endpoint=True), shape)
    return values.astype(sample.dtype)


def float_samples(generator, dtype: str, shape, content: str) -> np.ndarray:
    size = np.dtype(dtype).itemsize
    bit_patterns = f"u{size}"
    if content == "noise":                       # any bit pattern: NaN payloads included
        raw = generator.integers(0, 1 << (8 * size), shape, dtype=np.uint64)
        return raw.astype(bit_patterns).view(dtype)
    info = np.finfo(dtype)
    if content == "constant":
        return np.full(shape, generator.standard_normal() * 100, dtype)
    if content == "extremes":
        extremes = np.array([-np.inf, np.inf, info.max, -info.max, -0.0], dtype)
        return generator.choice(extremes, shape)
    if content == "few":
        raw = generator.integers(0, 1 << (8 * size), 3, dtype=np.uint64).astype(bit_patterns)
        return generator.choice(raw.view(dtype), shape)
    values = (wave(shape) * 100 + generator.standard_normal(shape)).astype(dtype)
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, info.smallest_subnormal], dtype)
    spots = generator.integers(0, values.size, min(values.size, 5))
    values.flat[spots] = specials[:len(spots)]
    return values


# ---------------------------------------------------------------- formats

@st.composite
def tiff(draw, sample: Sample) -> Written:
    array, recipe = draw(pixels(sample, (1, 2, 3, 4, 5)))
    options = dict(tiles=draw(st.sampled_from([None, (16, 16), (32, 16)])),
                   planar=draw(st.booleans()), big_endian=draw(st.booleans()),
                   bigtiff=draw(st.booleans()),
                   rows_per_strip=draw(st.one_of(st.none(), st.integers(1, 5))))
    count = array.size
    if options["tiles"]:
        (tile_width, tile_length), (height, width, channels) = options["tiles"], array.shape
        tiles = -(-height // tile_length) * -(-width // tile_width)
        count = tiles * tile_length * tile_width * channels
    return Written(samples.write_tiff(array, **options), "tiff", count, f"{recipe} {options}")


@st.composite
def pnm(draw, sample: Sample) -> Written:
    pam = draw(st.booleans())
    array, recipe = draw(pixels(sample, (1, 2, 3, 4, 5) if pam else (1, 3)))
    maxval = (1 << sample.bits) - 1
    return Written(samples.write_pnm(array, maxval, pam=pam), "pnm", array.size,
                   f"{recipe} maxval={maxval} pam={pam}")


@st.composite
def dpx(draw, sample: Sample) -> Written:
    array, recipe = draw(pixels(sample, (1, 3, 4)))
    options = dict(bits=sample.bits, big_endian=draw(st.booleans()),
                   packing=draw(st.sampled_from((0, 1, 2) if sample.bits in (10, 12) else (0,))))
    return Written(samples.write_dpx(array, **options), "dpx", array.size, f"{recipe} {options}")


@st.composite
def cineon(draw, sample: Sample) -> Written:
    array, recipe = draw(pixels(sample, (1, 3)))
    big_endian = draw(st.booleans())
    return Written(samples.write_cineon(array, big_endian=big_endian), "cineon", array.size,
                   f"{recipe} big_endian={big_endian}")


@st.composite
def dicom(draw, sample: Sample) -> Written:
    frames = [draw(pixels(sample, (1, 3))) for _ in range(draw(st.integers(1, 3)))]
    shape = frames[0][0].shape                   # every frame takes the first one's shape
    arrays = [np.resize(array, shape) for array, _ in frames]
    syntax = draw(st.sampled_from(["explicit-le", "implicit-le", "explicit-be"]))
    options = dict(bits_stored=sample.bits, planar=shape[2] == 3 and draw(st.booleans()),
                   big_endian=syntax == "explicit-be", implicit=syntax == "implicit-le",
                   sequence=draw(st.booleans()))
    data = samples.write_dicom(arrays if len(arrays) > 1 else arrays[0], **options)
    return Written(data, "dicom", sum(a.size for a in arrays),
                   f"{[recipe for _, recipe in frames]} (resized to {shape}) {options}")


@st.composite
def fits(draw, sample: Sample) -> Written:
    array, recipe = draw(pixels(sample, (1, 2, 3)))
    cube = draw(st.booleans())
    image = np.moveaxis(array, 2, 0) if cube else array[:, :, 0]
    extension = draw(st.booleans())
    data = samples.write_fits(None if extension else np.ascontiguousarray(image),
                              extensions=[image] if extension else ())
    return Written(data, "fits", image.size, f"{recipe} cube={cube} extension={extension}")


@st.composite
def exr(draw, sample: Sample) -> Written:
    array, recipe = draw(pixels(sample, (1, 2, 3, 4)))
    names = draw(st.sampled_from([("Y", "A", "Z", "W"), ("R", "G", "B", "A")]))
    origin = (draw(st.integers(-5, 5)), draw(st.integers(-5, 5)))
    planes = {name: array[:, :, c] for c, name in enumerate(names[:array.shape[2]])}
    return Written(samples.write_exr(planes, origin=origin), "exr", array.size,
                   f"{recipe} channels={sorted(planes)} origin={origin}")


def cases():
    u8, i8 = Sample("u1", 8), Sample("i1", 8)
    u16 = {bits: Sample("u2", bits) for bits in range(9, 17)}
    i16, i16_12 = Sample("i2", 16), Sample("i2", 12)
    f16, f32, u32, i32 = Sample("f2", 16), Sample("f4", 32), Sample("u4", 32), Sample("i4", 32)
    f64, u64, i64 = Sample("f8", 64), Sample("u8", 48), Sample("i8", 48)   # 48: values the generator can draw
    pairs = [(tiff, u8), (pnm, u8), (dpx, u8), (dicom, u8), (fits, u8), (tiff, i8)]
    for sample in u16.values():
        pairs += [(tiff, sample), (pnm, sample), (dicom, sample), (fits, sample)]
    pairs += [(dpx, u16[10]), (dpx, u16[12]), (dpx, u16[16]), (cineon, u16[10])]
    pairs += [(tiff, i16), (fits, i16), (dicom, i16), (dicom, i16_12)]
    pairs += [(exr, f16), (tiff, f16)]
    pairs += [(exr, f32), (tiff, f32), (fits, f32), (dpx, f32)]
    pairs += [(exr, u32), (tiff, u32), (dicom, u32)]
    pairs += [(tiff, i32), (fits, i32), (dicom, i32)]
    pairs += [(tiff, f64), (fits, f64), (tiff, u64), (tiff, i64), (fits, i64)]
    return [pytest.param(writer, sample, id=f"{writer.__name__}-{sample.name}")
            for writer, sample in pairs]


def assert_round_trips(written: Written, methods: set) -> None:
    assert codec.sniff(written.data) == written.kind
    encoded = codec.encode(written.data, threads=THREADS)
    assert codec.decode(encoded, threads=THREADS) == written.data
    rasters = codec.info(encoded)["rasters"]
    assert {raster["method"] for raster in rasters} == methods
    assert sum(r["height"] * r["width"] * r["channels"] for r in rasters) == written.samples


@pytest.mark.parametrize("writer, sample", cases())
@seed(SEED)
@settings(max_examples=MAX_EXAMPLES, deadline=None)
@given(data=st.data())
def test_random_samples_round_trip_through_real_files(writer, sample, data):
    assert_round_trips(data.draw(writer(sample)), {sample.method})


EXR_SAMPLES = {"f2": Sample("f2", 16), "f4": Sample("f4", 32), "u4": Sample("u4", 32)}


@seed(SEED)
@settings(max_examples=4 * MAX_EXAMPLES, deadline=None)
@given(data=st.data())
def test_exr_mixed_channel_types_round_trip(data):
    types = data.draw(st.lists(st.sampled_from(sorted(EXR_SAMPLES)), min_size=2, max_size=5))
    first, recipe = data.draw(pixels(EXR_SAMPLES[types[0]], (1,)))
    planes = {"ABGRZ"[0]: first[:, :, 0]}
    for index, dtype in enumerate(types[1:], start=1):
        array, _ = data.draw(pixels(EXR_SAMPLES[dtype], (1,)))
        planes["ABGRZ"[index]] = np.resize(array, first.shape)[:, :, 0]
    written = Written(samples.write_exr(planes), "exr", first.size * len(types),
                      f"{types} first={recipe}")
    assert_round_trips(written, {EXR_SAMPLES[dtype].method for dtype in types})
