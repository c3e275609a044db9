"""A worker budget that remembers what was asked of it."""
from __future__ import annotations

from worker.strategies import MemoryBudget


class RecordingBudget(MemoryBudget):
    """A MemoryBudget that remembers what each copy asked for."""

    def __init__(self, limit: int):
        super().__init__(limit)
        self.taken: list[int] = []

    def take(self, amount: int) -> int:
        self.taken.append(amount)
        return super().take(amount)
