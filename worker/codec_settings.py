"""The image codec stage's settings, apart from the stage itself.

Every worker builds them from its environment, but only a worker that gets a
codec task loads the stage and the codec (numpy and the kernels: about 0.2 s of
CPU, which every short plain copy would otherwise pay in each worker process).
"""
from __future__ import annotations

from dataclasses import dataclass

GiB = 1 << 30


@dataclass(frozen=True)
class CodecSettings:
    max_object: int = GiB           # larger objects move unchanged
    level: int = 2
    threads: int | None = None      # codec threads per object (None: the codec decides)
    verify: bool = True             # decode every container before keeping it

    def __post_init__(self):
        if self.max_object < 1:
            raise ValueError("the codec's max_object must be positive")
