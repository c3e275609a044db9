"""The codecs the codec benchmark times: CloudMover's own, fed files, and its peers, fed arrays.

A contender turns a corpus image into a ``Job``: the input it is given, an
``encode()`` that compresses that input, a ``decode(blob)`` that restores it,
and ``matches(decoded)``, the bit-exact check.  Building the job (writing the
PNM or DPX file, making the array contiguous) is not timed.  A contender that
cannot handle an image's dtype or shape raises ``Unsupported`` from ``job``.

CloudMover (``codec.encode`` / ``codec.decode``) takes the bytes of a whole
file and finds the pixels itself, so each image is written as a file with the
writers of ``codec.formats.samples``: binary PNM (P5/P6, maxval 2^bits - 1,
so 16-bit big-endian samples above 8 bits) for every class but ``dpx10``,
which becomes a 10-bit DPX (packing method A, big-endian).  Peers get the
numpy array (``dpx10``: the 10-bit values as uint16); JPEG 2000 and JPEG-XL
are told the image's significant bits, as the PNM maxval tells CloudMover.
Every peer runs on one thread: ``numthreads=1`` where imagecodecs has it; the
others are single-threaded already.
"""
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.codec_corpus import CorpusImage


class Unsupported(Exception):
    """The contender cannot take this image (dtype, shape, or missing library)."""


@dataclass(frozen=True)
class Job:
    encode: Callable[[], bytes]
    decode: Callable[[bytes], Any]
    matches: Callable[[Any], bool]


@dataclass(frozen=True)
class Contender:
    name: str
    label: str
    job: Callable[[CorpusImage], Job]


def cloudmover(*, level: int, threads: int) -> Contender:
    import codec
    from codec.formats import samples

    def job(image: CorpusImage) -> Job:
        if image.klass == "dpx10":
            data = samples.write_dpx(image.array, bits=10, packing=1, big_endian=True)
        else:
            data = samples.write_pnm(image.array, maxval=(1 << image.bits) - 1)
        return Job(encode=lambda: codec.encode(data, level=level, threads=threads),
                   decode=lambda blob: codec.decode(blob, threads=threads),
                   matches=lambda out: bytes(out) == data)

    suffix = "" if threads == 1 else f"-{threads}t"
    return Contender(f"cloudmover{suffix}", f"CloudMover level {level}, threads={threads}", job)


def peers() -> list[Contender]:
    """The peers, strongest ratio first (the order of the earlier measurement)."""
    return [
        _jpegxl(7), _jpegxl(3), _jpeg2k(), _jpegls(), _jpegxl(1), _htj2k(),
        Contender("zstd19-delta", "zstd -19 after horizontal delta + byte shuffle (zstandard)",
                  _zstd_job(level=19, delta=True)),
        _png(),
        Contender("zstd1-raw", "zstd -1 on the raw pixels (zstandard)", _zstd_job(level=1, delta=False)),
    ]


def _array_job(image: CorpusImage, encode: Callable[[np.ndarray], bytes],
               decode: Callable[[bytes], np.ndarray]) -> Job:
    array = image.array
    if array.dtype not in (np.uint8, np.uint16) or image.channels not in (1, 3):
        raise Unsupported(f"{array.dtype} with {image.channels} channels")   # what every peer here takes

    def matches(out) -> bool:
        out = np.asarray(out)
        return out.shape == array.shape and out.dtype == array.dtype and np.array_equal(out, array)

    return Job(encode=lambda: encode(array), decode=decode, matches=matches)


def _imagecodecs(name: str):
    import imagecodecs

    if not getattr(imagecodecs, name.upper()).available:
        raise Unsupported(f"imagecodecs built without {name}")
    return imagecodecs


def _jpegxl(effort: int) -> Contender:
    def job(image: CorpusImage) -> Job:
        ic = _imagecodecs("jpegxl")
        return _array_job(
            image,
            lambda a: ic.jpegxl_encode(a, lossless=True, effort=effort, bitspersample=image.bits, numthreads=1),
            lambda b: ic.jpegxl_decode(b, numthreads=1))

    return Contender(f"jxl-e{effort}", f"JPEG-XL lossless effort {effort} (libjxl)", job)


def _jpeg2k() -> Contender:
    def job(image: CorpusImage) -> Job:
        ic = _imagecodecs("jpeg2k")
        return _array_job(
            image,
            lambda a: ic.jpeg2k_encode(a, level=0, reversible=True, codecformat="J2K",
                                       bitspersample=image.bits, numthreads=1),
            lambda b: ic.jpeg2k_decode(b, numthreads=1))

    return Contender("j2k", "JPEG 2000 reversible (OpenJPEG)", job)


def _jpegls() -> Contender:
    def job(image: CorpusImage) -> Job:
        ic = _imagecodecs("jpegls")
        return _array_job(image, ic.jpegls_encode, ic.jpegls_decode)

    return Contender("jpegls", "JPEG-LS lossless (CharLS)", job)


def _htj2k() -> Contender:
    def job(image: CorpusImage) -> Job:
        ic = _imagecodecs("htj2k")
        return _array_job(image, lambda a: ic.htj2k_encode(a, reversible=True), ic.htj2k_decode)

    return Contender("htj2k", "HTJ2K reversible (OpenJPH)", job)


def _png() -> Contender:
    def job(image: CorpusImage) -> Job:
        ic = _imagecodecs("png")
        return _array_job(image, ic.png_encode, ic.png_decode)

    return Contender("png", "PNG, default level (libpng)", job)


def _zstd_job(*, level: int, delta: bool) -> Callable[[CorpusImage], Job]:
    """zstd on the pixels; with ``delta``, left-neighbour differences (mod 2^16) and byte planes first."""
    import zstandard

    def job(image: CorpusImage) -> Job:
        compressor = zstandard.ZstdCompressor(level=level)   # threads=0: one core
        decompressor = zstandard.ZstdDecompressor()
        shape, dtype = image.array.shape, image.array.dtype

        def encode(a: np.ndarray) -> bytes:
            return compressor.compress(_shuffle(_delta(a)) if delta else a)

        def decode(blob: bytes) -> np.ndarray:
            flat = decompressor.decompress(blob)
            if not delta:
                return np.frombuffer(flat, dtype).reshape(shape)
            return _undelta(_unshuffle(flat, dtype).reshape(shape))

        return _array_job(image, encode, decode)

    return job


def _delta(a: np.ndarray) -> np.ndarray:
    d = a.copy()
    d[:, 1:] -= a[:, :-1]        # per row, per channel; unsigned arithmetic wraps
    return d


def _undelta(d: np.ndarray) -> np.ndarray:
    return np.cumsum(d, axis=1, dtype=d.dtype)   # wraps back modulo 2^bits of the dtype


def _shuffle(a: np.ndarray) -> np.ndarray:
    """Byte planes: every sample's low byte, then every high byte (a no-op for uint8)."""
    return np.ascontiguousarray(a.reshape(-1).view(np.uint8).reshape(-1, a.itemsize).T)


def _unshuffle(flat: bytes, dtype: np.dtype) -> np.ndarray:
    planes = np.frombuffer(flat, np.uint8).reshape(dtype.itemsize, -1)
    return np.ascontiguousarray(planes.T).view(dtype).reshape(-1)
