"""The venue's market clock in a chaos run: replay speed while the bot trades, real time while a picture is taken."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime

from app.domain.clock import ms_from_utc, utc_from_ms

CYCLE_MS = 300_000
# While the harness takes a still picture the venue runs at real time: no 5m candle closes (nothing fills on its
# own), while bans and weight windows still run out. The bot process slows its own clock to match on `settle`.
HOLD_SPEED = 1.0


def next_boundary_ms(after_ms: int) -> int:
    """The first 5-minute boundary strictly after `after_ms`."""
    return (after_ms // CYCLE_MS + 1) * CYCLE_MS


class VenueClock:
    """Market time of the simulator: `start + wall elapsed x speed`; `hold` jumps ahead to a boundary and slows
    down to real time, `release` speeds up again from where it is. Thread-safe: the simulator's thread reads it."""

    def __init__(self, start: datetime, speed: float) -> None:
        if start.tzinfo is None:
            raise ValueError("VenueClock needs a timezone-aware start")
        self.speed = speed
        self._lock = threading.Lock()
        self._anchor_ms = ms_from_utc(start.astimezone(UTC))
        self._anchor_wall = time.monotonic()
        self._rate = speed  # market seconds per wall second right now

    def now_ms(self) -> int:
        with self._lock:
            return self._anchor_ms + int((time.monotonic() - self._anchor_wall) * 1000 * self._rate)

    def now(self) -> datetime:
        return utc_from_ms(self.now_ms())

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self._rate)

    @property
    def held(self) -> bool:
        return self._rate == HOLD_SPEED

    def hold(self, ahead_s: float, after_ms: int = 0) -> int:
        """Jump to the first boundary at least `ahead_s` market seconds from now (past any ban a fault left) and
        after `after_ms`, and run at real time from there; returns that boundary (ms)."""
        target_ms = next_boundary_ms(max(self.now_ms() + int(ahead_s * 1000) - 1, after_ms))
        self._rebase(HOLD_SPEED, target_ms)
        return target_ms

    def release(self) -> None:
        self._rebase(self.speed)

    def _rebase(self, rate: float, at_ms: int | None = None) -> None:
        """Go on at `rate` from `at_ms` (from now when None); never backwards."""
        with self._lock:
            wall = time.monotonic()
            now_ms = self._anchor_ms + int((wall - self._anchor_wall) * 1000 * self._rate)
            if at_ms is not None and at_ms < now_ms:
                raise ValueError("the venue's clock never goes backwards")
            self._anchor_ms, self._anchor_wall, self._rate = now_ms if at_ms is None else at_ms, wall, rate

    def __repr__(self) -> str:
        return f"VenueClock({self.now().isoformat()}, x{self._rate:g})"
