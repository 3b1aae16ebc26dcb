"""A small circuit breaker: after a failure, calls fail at once for a cool-down.

Used in front of the API's Redis client so that an outage costs one timeout,
not one per request: ``/healthz`` and every job call answer "unavailable" at
once while the circuit is open. After ``reset_s`` one trial call goes through
(half-open); its success closes the circuit, its failure opens it again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CircuitOpenError(Exception):
    """The circuit is open: the call was not attempted."""


class CircuitBreaker:
    def __init__(
        self,
        *,
        failures: int = 1,
        reset_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = max(1, failures)
        self._reset_s = reset_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None

    @property
    def open(self) -> bool:
        with self._lock:
            return self._opened_at is not None

    def before(self) -> None:
        """Raises ``CircuitOpenError`` unless a call may go through now."""
        with self._lock:
            if self._opened_at is None:
                return
            now = self._clock()
            if now - self._opened_at < self._reset_s:
                raise CircuitOpenError("circuit open")
            self._opened_at = now  # half-open: this caller tries, the others still wait

    def success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._failures >= self._threshold:
                self._opened_at = self._clock()
