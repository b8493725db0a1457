"""A sender number's throughput as the sandbox holds it, and the sends it accepted per calendar
second (the second of the clock, floor(t)), for tests and benches.

Two ways to hold the rate, each answering 130429 beyond it as Meta does (SPEC §7, §11):

- **tolerant** (the default): a token bucket of one second's worth, so a client that paces
  itself at the rate is never refused for the jitter of its own dispatch (a calendar second
  may then carry up to twice the rate after a quiet spell);
- **strict** (`campaigns sandbox --strict-throughput`, the numbers bench and specs): at most
  `rate` in each calendar second, no credit carried from a quiet second, so that a client that
  bursts is caught in the very second it goes over. Temporal's own task-queue limit bursts one
  second's worth (docs/engine.md): on its own, at the full rate, a strict sandbox refuses some
  sends; with the store's per-second admission (store/send_slots.py) it refuses none.
"""

import math
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class SenderThroughput:
    """Sends accepted, at most `rate` a second (a fraction is rounded down, at least 1). Not
    thread-safe: the emulator calls it under its lock."""

    rate: float
    strict: bool = False
    second: int = -1
    used: int = 0
    tokens: float | None = None  # tolerant: the bucket (full at the first send)
    updated: float = 0.0
    refused: int = 0
    # Accepted sends per calendar second (`busiest_second`).
    history: Counter[int] = field(default_factory=Counter)

    @property
    def per_second(self) -> int:
        return max(1, math.floor(self.rate))

    def take(self, now: float) -> bool:
        """One send at time `now` (seconds): True if accepted, False if over the rate."""
        if not (self._take_strict(now) if self.strict else self._take_tolerant(now)):
            self.refused += 1
            return False
        self.history[math.floor(now)] += 1
        return True

    def _take_strict(self, now: float) -> bool:
        second = math.floor(now)
        if second != self.second:
            self.second, self.used = second, 0
        if self.used >= self.per_second:
            return False
        self.used += 1
        return True

    def _take_tolerant(self, now: float) -> bool:
        capacity = max(1.0, self.rate)
        tokens = capacity if self.tokens is None else self.tokens
        self.tokens = min(capacity, tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def busiest_second(self) -> int:
        """The most sends accepted in one calendar second so far (0 if none)."""
        return max(self.history.values(), default=0)
