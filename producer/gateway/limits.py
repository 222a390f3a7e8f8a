"""Per-key limits: a token bucket for the request rate and a counter of requests in flight.

Both live in the gateway's process (one uvicorn worker process: the limits are per process). A request
over a limit is refused at once with 429 and a Retry-After, never queued.
"""

from __future__ import annotations

import math
import threading
import time

from fastapi import HTTPException, status


class TooManyRequests(HTTPException):
    """Raised when a key is over its rate or in-flight limit: a 429 with Retry-After (whole seconds)."""

    def __init__(self, detail: str, retry_after: float) -> None:
        seconds = max(1, math.ceil(retry_after))
        super().__init__(status.HTTP_429_TOO_MANY_REQUESTS, detail, headers={"Retry-After": str(seconds)})


class RateLimit:
    """A token bucket: ``rate`` tokens a second, at most ``burst`` kept (default: one second's worth)."""

    def __init__(self, rate: float, burst: int | None = None) -> None:
        self.rate = rate
        self.burst = float(burst if burst is not None else max(1, math.ceil(rate)))
        self._tokens = self.burst
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Take a token: 0.0 when there was one, else the seconds until there is (nothing taken)."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self.rate


class InFlightLimit:
    """At most ``limit`` requests at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._count = 0
        self._lock = threading.Lock()

    def enter(self) -> bool:
        """Count one more request in flight; False (nothing counted) when the limit is reached."""
        with self._lock:
            if self._count >= self.limit:
                return False
            self._count += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self._count -= 1
