"""Where pixels sit inside a file: the contract between format readers and the coder.

A format reader (``codec/formats``) describes each block of pixel samples in a
file as a ``Raster``: its byte range and how samples are stored there (a
``sample`` layout from ``codec/layouts.py``).  Everything outside the rasters
(headers, padding, trailing data) is kept verbatim by the container, and a
raster whose bytes do not survive ``unpack`` → ``pack`` unchanged is stored
verbatim too, so a reader that guesses wrong costs ratio, never correctness.
"""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Raster:
    offset: int      # first byte of the pixel data in the file
    length: int      # bytes the pixel data spans, row padding included
    height: int
    width: int
    channels: int    # samples per pixel, interleaved; planar data is one raster per plane
    bits: int        # significant bits per sample (1..16 for pixel-coded layouts, 32 or 64 for shuffled ones)
    sample: str      # storage layout: a key of codec.layouts.LAYOUTS
    row_stride: int = 0   # bytes from one row's start to the next; 0 when rows are back to back

    @property
    def end(self) -> int:
        return self.offset + self.length


def row_spans(raster: Raster) -> np.ndarray | None:
    """(start, end) of each byte run ``raster`` owns: its rows when strided, else its whole
    block; None when its geometry is unsound (a strided row longer than the stride)."""
    if not raster.row_stride:
        return np.array([[raster.offset, raster.end]], dtype=np.int64)
    row = raster.length - raster.row_stride * (raster.height - 1)
    if row <= 0 or row > raster.row_stride:
        return None
    starts = raster.offset + raster.row_stride * np.arange(raster.height, dtype=np.int64)
    return np.stack([starts, starts + row], axis=1)


def rows_disjoint(rasters: list[Raster]) -> bool:
    """Whether no two of ``rasters`` share a byte: strided ones (``row_stride``) only own
    their rows, so they may interleave."""
    spans = [row_spans(raster) for raster in rasters]
    if any(s is None for s in spans):
        return False
    if not spans:
        return True
    spans = np.concatenate(spans)
    spans = spans[np.argsort(spans[:, 0], kind="stable")]
    return bool((spans[1:, 0] >= spans[:-1, 1]).all())
