"""Where pixels sit inside a file: the contract between format readers and the coder.

A format reader (``codec/formats``) describes each block of pixel samples in a
file as a ``Raster``: its byte range and how samples are stored there (a
``sample`` layout from ``codec/layouts.py``).  Everything outside the rasters
(headers, padding, trailing data) is kept verbatim by the container, and a
raster whose bytes do not survive ``unpack`` → ``pack`` unchanged is stored
verbatim too, so a reader that guesses wrong costs ratio, never correctness.
"""
from dataclasses import dataclass


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
