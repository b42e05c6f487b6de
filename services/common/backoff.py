"""Exponential backoff with jitter, for loops that retry an unreachable peer."""

from __future__ import annotations

import asyncio
import random


class Backoff:
    def __init__(
        self, initial_s: float = 0.5, cap_s: float = 30.0, rng: random.Random | None = None
    ) -> None:
        self.initial_s = initial_s
        self.cap_s = cap_s
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """The next wait: uniform in [c/2, c], c = min(cap, initial * 2^attempt) ("equal jitter")."""
        ceiling = min(self.cap_s, self.initial_s * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 32)
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


def stopping() -> bool:
    """True while the current task is being cancelled: a retry loop must then end, not
    retry. grpc.aio may report a call cut short by that cancellation as an AioRpcError
    (CANCELLED), so a loop that catches AioRpcError would otherwise swallow its own stop
    and leave whoever awaits it hanging."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
