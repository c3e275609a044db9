"""Image frames for codec job tests: smooth synthetic pictures as DPX and TIFF bytes.

Smooth gradients with a little seeded noise, so that a lossless codec really
shrinks them, and deterministic, so a failure reproduces.
"""
from __future__ import annotations

import numpy as np

from codec.formats.samples import write_dpx, write_tiff


def picture(seed: int, *, height: int = 96, width: int = 160, bits: int = 10) -> np.ndarray:
    """An RGB picture (height, width, 3) of values below 2**bits: gradients plus seeded noise."""
    rng = np.random.default_rng(seed)
    top = (1 << bits) - 1
    y, x = np.mgrid[0:height, 0:width]
    channels = [(x * (0.4 + 0.2 * c) + y * (0.6 - 0.1 * c)) / (width + height) * top * 0.8 for c in range(3)]
    image = np.stack(channels, axis=-1) + rng.normal(0, 2.0, (height, width, 3)) + seed % 50
    return np.clip(np.rint(image), 0, top).astype(np.uint16)


def dpx_frame(seed: int) -> bytes:
    return write_dpx(picture(seed, bits=10), bits=10)


def tiff_frame(seed: int) -> bytes:
    return write_tiff(picture(seed, bits=16))
