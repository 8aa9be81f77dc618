"""Retrying transient driver errors with exponential backoff and jitter; permanent errors pass straight through."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from orchestrator.model.errors import TransientDriverError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``attempts`` tries in all; waits ``max(error.delay, base * 2**n)`` (capped, with ±25 % jitter)."""

    attempts: int = 4
    base: float = 0.2
    cap: float = 10.0

    def delay(self, attempt: int, error: TransientDriverError) -> float:
        wait = min(self.cap, max(error.delay, self.base * (2**attempt)))
        jitter: float = random.uniform(0.75, 1.25)
        return float(wait * jitter)


def with_retries(call: Callable[[], T], policy: RetryPolicy,
                 on_retry: Callable[[int, TransientDriverError, float], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> T:
    """Run ``call``; on TransientDriverError wait and retry up to ``policy.attempts`` times in all."""
    for attempt in range(policy.attempts):
        try:
            return call()
        except TransientDriverError as exc:
            if attempt + 1 >= policy.attempts:
                raise
            wait = policy.delay(attempt, exc)
            if on_retry is not None:
                on_retry(attempt + 1, exc, wait)
            sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover
