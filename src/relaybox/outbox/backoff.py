"""Retry delays: exponential backoff with jitter, and a transport's retry-after when longer."""

from __future__ import annotations

import random

from relaybox.config import RetryPolicy


def retry_delay(
    policy: RetryPolicy,
    attempt: int,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before run ``attempt + 1`` after run ``attempt`` failed.

    ``base * 2 ** (attempt - 1)`` capped at ``backoff_max_seconds``, then scaled by a random
    factor in ``[1 - jitter, 1]`` so that many deliveries failing together do not retry in
    lockstep. A transport's retry-after is a floor: we never come back sooner than asked.
    """
    exponent = min(max(attempt - 1, 0), 62)
    delay = min(policy.backoff_max_seconds, policy.backoff_base_seconds * (2.0**exponent))
    delay *= 1.0 - policy.jitter * (rng or random).random()
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay
