"""Retry with backoff for store requests, and the tally of retries per task.

Stores call ``call_with_retries``; it retries ``RetryableError`` with
exponential backoff and full jitter, and counts each retry (by error code) in
the tally of the task being executed, so the job's log can say how often a
store throttled. A worker opens a tally per task with ``tally_retries()``.
"""
from __future__ import annotations

import contextlib
import contextvars
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, TypeVar

from pipeline.errors import RetryableError

T = TypeVar("T")
_tally: contextvars.ContextVar[Counter | None] = contextvars.ContextVar("retry_tally", default=None)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8
    base_delay: float = 0.05
    max_delay: float = 5.0
    sleep: Callable[[float], None] = time.sleep


@contextlib.contextmanager
def tally_retries():
    """Collect the retries made in this context (and threads run with its copy)."""
    counter: Counter = Counter()
    token = _tally.set(counter)
    try:
        yield counter
    finally:
        _tally.reset(token)


def call_with_retries(fn: Callable[[], T], policy: RetryPolicy, rng=random) -> T:
    attempt = 1
    while True:
        try:
            return fn()
        except RetryableError as exc:
            if attempt >= policy.attempts:
                raise
            counter = _tally.get()
            if counter is not None:
                counter[getattr(exc, "store_code", exc.code)] += 1
            cap = min(policy.max_delay, policy.base_delay * (2 ** (attempt - 1)))
            policy.sleep(rng.uniform(0, cap))
            attempt += 1
