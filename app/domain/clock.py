"""The injected clock: wall time for live trading, simulated time for backtests and replays."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class WallClock:
    """Real UTC time."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class SimulatedClock:
    """Time that moves only when told to; `sleep` advances it instantly."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("SimulatedClock needs a timezone-aware start time")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        if when < self._now:
            raise ValueError(f"time cannot go backwards: {when.isoformat()} < {self._now.isoformat()}")
        self._now = when.astimezone(UTC)

    def advance(self, delta: timedelta) -> None:
        self.set(self._now + delta)

    async def sleep(self, seconds: float) -> None:
        self.advance(timedelta(seconds=max(0.0, seconds)))
        await asyncio.sleep(0)


class ReplayClock:
    """Market time that runs `speed` times faster than the wall clock from `start` (the demo's clock)."""

    def __init__(self, start: datetime, speed: float, wall: Clock | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._wall = wall or WallClock()
        self._start = start.astimezone(UTC)
        self._wall_start = self._wall.now()
        self.speed = speed

    def now(self) -> datetime:
        elapsed = self._wall.now() - self._wall_start
        return self._start + elapsed * self.speed

    async def sleep(self, seconds: float) -> None:
        await self._wall.sleep(seconds / self.speed)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def utc_from_ms(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def ms_from_utc(when: datetime) -> int:
    global _last
    last = _last  # a cycle converts its own time many times (klines, orders, lookups): the last answer is kept
    if last[0] is when:  # datetimes are immutable: the same object, the same instant
        return last[1]
    ms = (when - EPOCH) // _ONE_MS
    _last = (when, ms)
    return ms


_last: tuple[datetime | None, int] = (None, 0)
