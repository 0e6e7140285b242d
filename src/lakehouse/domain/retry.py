"""Retry policy: exponential backoff with full jitter, pure."""

from __future__ import annotations

import random


def backoff_seconds(attempt: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Delay before attempt ``attempt + 1`` after ``attempt`` failed (attempt counts from 1).

    The ceiling doubles per attempt (base, 2·base, 4·base …, capped at ``max_s``); the delay is
    drawn in [ceiling/2, ceiling] so that retries of many phases spread out but never come at once.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    ceiling = min(max_s, base_s * (1 << (attempt - 1)))  # 2 ** (attempt - 1), typed as an int
    r = rng.random() if rng is not None else random.random()
    return ceiling / 2 + r * ceiling / 2


def may_retry(attempt: int, max_attempts: int, retryable: bool) -> bool:
    return retryable and attempt < max_attempts
