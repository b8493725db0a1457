"""A sender number's throughput as the sandbox holds it: at most `rate` sends accepted in each
calendar second (the second of the clock, floor(t)); the next one in that second is answered
130429, as Meta answers a number that goes above its messages-per-second (SPEC §7, §11).

No credit is carried from a quiet second to the next one, so a client that bursts (a token
bucket that saved up a second's worth, two workers each pacing themselves) is caught in the
very second it goes over, which is what the engine's per-number rate is measured against.
"""

import math
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class CalendarSecondLimit:
    """Sends accepted per calendar second, at most `rate` (a fraction is rounded down, at
    least 1). Not thread-safe: the emulator calls it under its lock."""

    rate: float
    second: int = -1
    used: int = 0
    refused: int = 0
    # Accepted sends per calendar second, kept for tests and benches (`busiest_second`).
    history: Counter[int] = field(default_factory=Counter)

    @property
    def per_second(self) -> int:
        return max(1, math.floor(self.rate))

    def take(self, now: float) -> bool:
        """One send at time `now` (seconds): True if accepted, False if over the rate."""
        second = math.floor(now)
        if second != self.second:
            self.second, self.used = second, 0
        if self.used >= self.per_second:
            self.refused += 1
            return False
        self.used += 1
        self.history[second] += 1
        return True

    def busiest_second(self) -> int:
        """The most sends accepted in one calendar second so far (0 if none)."""
        return max(self.history.values(), default=0)
