"""Fuzz the codec's decoder: coverage-guided with atheris when it is installed,
otherwise by random mutation of real containers.  Any exception other than
``CodecError``, and any decode that returns bytes its container does not
describe, is a finding (atheris stops and writes the input to ./crash-*).

    python scripts/fuzz_codec.py CORPUS_DIR -max_total_time=600   # atheris (pip install atheris)
    python scripts/fuzz_codec.py --seeds CORPUS_DIR                 # write the seed containers first
    python scripts/fuzz_codec.py --mutations 50000                 # without atheris
"""
import sys

import numpy as np
import xxhash

import codec
from codec.formats import samples


def seeds() -> dict:
    """Small real containers of several kinds, with the bytes they must decode to."""
    generator = np.random.default_rng(1)
    y, x = np.mgrid[0:40, 0:36]
    wave = np.sin(x / 5.0)[..., None] * np.cos(y / 7.0)[..., None] * 300 + 500
    rgb = np.clip(wave + generator.normal(0, 4, (40, 36, 3)), 0, 1023).astype(np.uint16)
    # and one above PARALLEL_BYTES, whose decode writes into bytes that start unzeroed
    big = np.clip(np.tile(wave, (4, 5, 1)) + generator.normal(0, 4, (160, 180, 3)), 0, 1023).astype(np.uint16)
    # and one whose padding bits are not all zero, coded with its stray bits beside the pixels
    stray = np.frombuffer(samples.write_dpx(big, bits=10, packing=1), dtype=np.uint8).copy()
    stray[2048 + 3::28] |= 0x03
    files = [samples.write_dpx(rgb, bits=10, packing=1), samples.write_tiff((rgb >> 2).astype(np.uint8)),
             samples.write_pnm((rgb * 64).astype(np.uint16)), b"not an image " * 30,
             samples.write_dpx(big, bits=10, packing=1), stray.tobytes(),
             samples.write_dpx(big, bits=10, packing=0), samples.write_dpx(rgb << 2, bits=12, packing=0)]
    return {codec.encode(data, threads=1): data for data in files}


SEEDS = seeds()
MAX_SIZE = 1 << 24      # what an untrusted-input caller would allow


def check(candidate: bytes) -> None:
    """Decoding either refuses with CodecError or gives exactly the bytes the
    container describes (its size and XXH3-128).  A mutated container can be
    valid: the fuzzer learns to write the matching checksum into the header."""
    try:
        decoded = codec.decode(candidate, threads=1, max_size=MAX_SIZE)
    except codec.CodecError:
        return
    described = codec.info(candidate)
    if len(decoded) != described["original_size"] or \
            "xxh3-128:" + xxhash.xxh3_128_hexdigest(decoded) != described["checksum"]:
        raise AssertionError("decode returned bytes its container does not describe")
    if candidate in SEEDS and decoded != SEEDS[candidate]:
        raise AssertionError("a seed container decoded to different bytes")


def mutate(generator: np.random.Generator, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(int(generator.integers(1, 7))):
        kind = generator.random()
        where = int(generator.integers(0, len(out)))
        if kind < 0.7:
            out[where] ^= int(generator.integers(1, 256))
        elif kind < 0.85:
            del out[where:where + int(generator.integers(1, 20))]
        else:
            out[where:where] = generator.bytes(int(generator.integers(1, 9)))
    return bytes(out)


def mutation_run(count: int) -> None:
    generator = np.random.default_rng(20261126)
    containers = list(SEEDS)
    for index in range(count):
        check(mutate(generator, containers[index % len(containers)]))
    print(f"{count} mutated containers: no crash, no wrong bytes")


def write_seeds(directory: str) -> None:
    """Put the seed containers in ``directory`` (an atheris corpus folder)."""
    from pathlib import Path
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    for index, encoded in enumerate(SEEDS):
        (folder / f"seed-{index}.cmv").write_bytes(encoded)


def main() -> None:
    if "--seeds" in sys.argv:
        write_seeds(sys.argv[sys.argv.index("--seeds") + 1])
        return
    if "--mutations" in sys.argv:
        mutation_run(int(sys.argv[sys.argv.index("--mutations") + 1]))
        return
    import atheris
    atheris.instrument_all()        # coverage of the Python side (container, tables, palettes, layouts)
    atheris.Setup(sys.argv, lambda data: check(bytes(data)))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
