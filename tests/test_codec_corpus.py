"""Acceptance: every corpus image, written in every container format that holds
it exactly, comes back from ``codec.decode(codec.encode(...))`` byte for byte.

The corpus is the codec benchmark's (``bench/codec_corpus.py``): 22 integer
images decoded from files inside PyPI wheels (scikit-image, matplotlib,
pydicom, astropy, vc2-conformance-data), built once per session into a
pytest temporary directory, so no local cache and no network is involved.
Each image is written with the sample writers of ``codec.formats.samples``;
besides the exact round trip, the file must be recognised as its format and
every sample must sit in a raster the codec coded (``pixels``, or
``shuffled`` for 32-bit samples): the coded rasters' samples add up to the
image's (plus the padding of TIFF edge tiles).

Variants, and the classes they are run on (every image of the class that the
variant holds is round-tripped; at least one must be):

    pnm                 all classes; maxval 255, 65535 or 2**bits - 1
    tiff-strips         all; chunky little-endian strips of about 8 KiB
    tiff-tiles-planar-be all; 256x256 tiles, one plane per channel, big-endian
    dicom-le            all; explicit VR little endian, BitsStored = bits
    dicom-be-planar     all; explicit VR big endian, RGB colour-by-plane
    fits                all; BITPIX 8 for 8-bit data, 16 with BZERO=32768
                        otherwise (RGB as a 3-plane cube)
    exr-float, exr-uint all; FLOAT and UINT channels hold any 16-bit integer
    exr-half            all but rgb16; only images whose samples are all <= 2048
                        (up to 2**11 every integer is exact in a half), so some
                        medical slices (CT up to 3896) and every 16-bit frame
                        are left out
    cineon-be, cineon-le rgb8, gray8, dpx10: Cineon stores 10-bit samples only
    dpxD-pP-{be,le}     D = 8: rgb8, gray8; D = 10: those and dpx10;
                        D = 12: all but rgb16; D = 16: all.  Packings 0, 1, 2
                        for 10 and 12 bits; 8 and 16 bits are whole words,
                        where the packing field changes nothing.

So the whole cross product is run: 27 variants, 463 files, every image in
every variant that holds it exactly.  Left out are only the pairs that would
lose bits: the 16-bit camera frames in DPX/Cineon below 16 bits and in EXR
HALF, the 11-12-bit images in 8/10-bit DPX and Cineon, and the four
medical/science images with samples above 2048 in EXR HALF (the 8-bit photos
go into every variant).  Float, signed and 32-bit samples, odd sizes and more
channels are the business of ``test_codec_properties.py``.  The module takes
about 25 s on two cores.
"""
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

import codec
from codec.formats import samples

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.append(ROOT)            # bench/ is not an installed package
from bench.codec_corpus import CLASSES, CorpusImage, load_corpus  # noqa: E402

THREADS = 2
EXPECTED_IMAGES = 22
HALF_EXACT = 2048          # every integer up to 2**11 is exact in float16
CINEON_BITS = 10


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict[str, list[CorpusImage]]:
    return load_corpus(cache_dir=tmp_path_factory.mktemp("codec-corpus"))


def channels_of(image: CorpusImage) -> list[np.ndarray]:
    return [image.array] if image.array.ndim == 2 else \
        [image.array[:, :, c] for c in range(image.array.shape[2])]


def exactly(array: np.ndarray, dtype) -> np.ndarray:
    """``array`` as ``dtype``; a conversion that changes a value is a test bug."""
    converted = array.astype(dtype)
    if not np.array_equal(converted.astype(np.int64), array):
        raise ValueError(f"{array.dtype} samples do not fit {np.dtype(dtype)} exactly")
    return converted


def write_exr(image: CorpusImage, dtype) -> bytes:
    names = ["Y"] if image.array.ndim == 2 else ["R", "G", "B"]
    return samples.write_exr({name: exactly(plane, dtype)
                              for name, plane in zip(names, channels_of(image))})


def write_fits(image: CorpusImage) -> bytes:
    array = image.array if image.array.ndim == 2 else np.moveaxis(image.array, 2, 0)
    return samples.write_fits(np.ascontiguousarray(array))


def write_pnm(image: CorpusImage) -> bytes:
    maxval = None if image.bits in (8, 16) else (1 << image.bits) - 1
    return samples.write_pnm(image.array, maxval)


def tile_padded(image: CorpusImage, tile: int) -> int:
    """Samples in the whole tiles covering the image."""
    height, width = image.array.shape[:2]
    return -(-height // tile) * -(-width // tile) * tile * tile * \
        (image.array.size // (height * width))


@dataclass(frozen=True)
class Variant:
    name: str
    kind: str                                     # what codec.sniff must say
    method: str                                   # how every raster must be coded
    classes: tuple                                # where at least one image fits
    write: Callable[[CorpusImage], bytes]
    holds: Callable[[CorpusImage], bool] = lambda image: True
    samples: Callable[[CorpusImage], int] = lambda image: image.array.size


ALL, BITS8 = CLASSES, ("rgb8", "gray8")
TILE = 256


def dpx_variants():
    depths = [(8, BITS8), (10, BITS8 + ("dpx10",)),
              (12, tuple(k for k in CLASSES if k != "rgb16")), (16, ALL)]
    for bits, classes in depths:
        for packing in (0, 1, 2) if bits in (10, 12) else (0,):
            for big_endian in (True, False):
                yield Variant(
                    f"dpx{bits}-p{packing}-{'be' if big_endian else 'le'}", "dpx", "pixels",
                    classes,
                    write=lambda image, b=bits, p=packing, e=big_endian: samples.write_dpx(
                        image.array, bits=b, packing=p, big_endian=e),
                    holds=lambda image, b=bits: image.bits <= b)


VARIANTS = [
    Variant("pnm", "pnm", "pixels", ALL, write=write_pnm),
    Variant("tiff-strips", "tiff", "pixels", ALL,
            write=lambda image: samples.write_tiff(image.array)),
    Variant("tiff-tiles-planar-be", "tiff", "pixels", ALL,
            write=lambda image: samples.write_tiff(image.array, tiles=(TILE, TILE), planar=True,
                                                   big_endian=True),
            samples=lambda image: tile_padded(image, TILE)),
    Variant("dicom-le", "dicom", "pixels", ALL,
            write=lambda image: samples.write_dicom(image.array, bits_stored=image.bits)),
    Variant("dicom-be-planar", "dicom", "pixels", ALL,
            write=lambda image: samples.write_dicom(image.array, bits_stored=image.bits,
                                                    big_endian=True, planar=True)),
    Variant("fits", "fits", "pixels", ALL, write=write_fits),
    Variant("exr-float", "exr", "shuffled", ALL,
            write=lambda image: write_exr(image, np.float32)),
    Variant("exr-uint", "exr", "shuffled", ALL,
            write=lambda image: write_exr(image, np.uint32)),
    Variant("exr-half", "exr", "pixels", tuple(k for k in CLASSES if k != "rgb16"),
            write=lambda image: write_exr(image, np.float16),
            holds=lambda image: int(image.array.max()) <= HALF_EXACT),
    *(Variant(f"cineon-{order}", "cineon", "pixels", BITS8 + ("dpx10",),
              write=lambda image, e=order == "be": samples.write_cineon(image.array, big_endian=e),
              holds=lambda image: image.bits <= CINEON_BITS)
      for order in ("be", "le")),
    *dpx_variants(),
]


def test_corpus_is_complete(corpus):
    images = [image for klass in CLASSES for image in corpus[klass]]
    assert len(images) == EXPECTED_IMAGES
    assert all(corpus[klass] for klass in CLASSES)
    for image in images:
        assert image.array.dtype in (np.uint8, np.uint16) and image.array.flags.c_contiguous
        assert int(image.array.max()) < 1 << image.bits


@pytest.mark.parametrize("variant, klass", [pytest.param(v, k, id=f"{v.name}-{k}")
                                            for v in VARIANTS for k in v.classes])
def test_corpus_round_trips_in_every_format(corpus, variant, klass):
    images = [image for image in corpus[klass] if variant.holds(image)]
    assert images, f"no {klass} image fits {variant.name}: the corpus no longer exercises it"
    for image in images:
        data = variant.write(image)
        assert codec.sniff(data) == variant.kind, image.name
        encoded = codec.encode(data, threads=THREADS)
        assert codec.decode(encoded, threads=THREADS) == data, image.name
        rasters = codec.info(encoded)["rasters"]
        assert {raster["method"] for raster in rasters} == {variant.method}, image.name
        coded = sum(r["height"] * r["width"] * r["channels"] for r in rasters)
        assert coded == variant.samples(image), image.name
