"""Throttling of failed authentications (brute force): after `limit` failures within `window`
seconds from one client address, or against one key id, further attempts are refused with 429
and `Retry-After` until the oldest failure leaves the window. Successes are not throttled
and reset nothing: a guesser that also holds a valid key gains no extra guesses.

In memory, per API process: with N replicas an attacker gets N times `limit` guesses per window,
against keys of 256 random bits. Memory is bounded (`max_tracked` keys, oldest forgotten).
"""

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable


class FailedAuthThrottle:
    def __init__(
        self,
        limit: int,
        window: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_tracked: int = 100_000,
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._max_tracked = max_tracked
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, keys: Iterable[str]) -> int | None:
        """Whole seconds until every one of `keys` may try again; None when none is blocked."""
        now = self._clock()
        wait = 0.0
        for key in keys:
            failures = self._recent(key, now)
            if failures is not None and len(failures) >= self.limit:
                wait = max(wait, failures[0] + self.window - now)
        return max(1, math.ceil(wait)) if wait > 0 else None

    def record_failure(self, keys: Iterable[str]) -> None:
        now = self._clock()
        for key in keys:
            failures = self._failures.pop(key, None) or deque()
            failures.append(now)
            while len(failures) > self.limit:  # only the last `limit` matter
                failures.popleft()
            self._failures[key] = failures  # most recently failed last
        while len(self._failures) > self._max_tracked:
            self._failures.popitem(last=False)

    def _recent(self, key: str, now: float) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures
