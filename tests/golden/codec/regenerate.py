"""Rewrites the golden containers from the committed inputs beside this file.

Run it only on purpose: after a deliberate format change (with a new container
or raster coder version), or after a change in what the encoder chooses within
the format (then the containers committed before must still decode, unchanged).
The tests never write golden files themselves.
Creates the inputs too when they are missing (seeded, so they are the same
every time).
"""
from pathlib import Path

import numpy as np

import codec
from codec.formats import samples

HERE = Path(__file__).parent


def inputs() -> dict:
    generator = np.random.default_rng(20261126)
    y, x = np.mgrid[0:24, 0:20]
    wave = (np.sin(x / 4.0) * np.cos(y / 5.0) * 0.4 + 0.5)[..., None]
    rgb = wave * np.array([0.9, 1.0, 0.8]) + generator.normal(0, 0.01, (24, 20, 3))
    rgb10 = np.clip(rgb * 1023, 0, 1023).astype(np.uint16)
    gray16 = np.clip(wave[..., 0] * 65535 + generator.normal(0, 300, (24, 20)), 0, 65535).astype(np.uint16)
    return {
        "frame10.dpx": samples.write_dpx(rgb10, bits=10, packing=1, big_endian=True),
        "gray16.tif": samples.write_tiff(gray16),
        "rgb8.tif": samples.write_tiff((rgb10 >> 2).astype(np.uint8)),
        "notes.txt": b"not an image: kept verbatim, generically compressed\n" * 20,
    }


def main() -> None:
    for name, data in inputs().items():
        source = HERE / name
        if not source.exists():
            source.write_bytes(data)
        (HERE / (name + ".cmv")).write_bytes(codec.encode(source.read_bytes(), threads=1))
        print("wrote", name + ".cmv")


if __name__ == "__main__":
    main()
