"""Image frames for codec job tests: smooth synthetic pictures as DPX and TIFF bytes.

Smooth gradients with a little seeded noise, so that a lossless codec really
shrinks them, and deterministic, so a failure reproduces.
"""
from __future__ import annotations

from codec.formats.samples import picture, write_dpx, write_tiff


def dpx_frame(seed: int) -> bytes:
    return write_dpx(picture(seed, bits=10), bits=10)


def tiff_frame(seed: int) -> bytes:
    return write_tiff(picture(seed, bits=16))
