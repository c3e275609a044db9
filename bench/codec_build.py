"""Which build of the codec a benchmark result belongs to: a digest of its sources.

``bench/codec.py --json`` records it, and ``bench/fleet_sim.py`` takes the codec's
speed from that file only when it matches the code at hand (a result of an older
build once shipped speeds 3-4x too slow into the estimates).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

CODEC_DIR = Path(__file__).resolve().parents[1] / "codec"


def source_digest() -> str:
    """SHA-256 over the codec's Python and Cython sources, names included."""
    digest = hashlib.sha256()
    for path in sorted(CODEC_DIR.rglob("*")):
        if path.suffix in (".py", ".pyx") and "__pycache__" not in path.parts:
            digest.update(path.relative_to(CODEC_DIR).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
