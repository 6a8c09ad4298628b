"""The injected clock: wall time for live trading, simulated time for backtests and replays."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

logger = logging.getLogger(__name__)


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


ServerTimeSource = Callable[[], Awaitable[int]]  # a venue's clock in ms since the epoch, e.g. GET /api/v3/time
_MIN_RATE = 1e-6  # a venue whose clock stood still between samples: a rate, not a division by zero
_MIN_WALL_WAIT_S = 0.001  # the last microseconds of a sleep are not worth a request each


class VenueClock:
    """Market time that follows a venue's server clock at whatever rate it runs (`trdbot exchange-sim --speed N`).

    Each sample pairs the venue's time with the wall time its answer arrived (the venue was at least that far by
    then, so the estimate never runs ahead by the network delay); the rate is venue seconds per wall second over the
    last `window` samples. `now()` is the last sample plus the wall time since, times the rate, and never goes
    backwards. `sleep(s)` waits s / rate wall seconds, at most `max_wall_wait_s` at a time, sampling again after each
    wait, until the venue itself has reached the target: a cycle due at 12:05 must not start before the venue's 12:05,
    or its 12:00 candle would still be open there.
    """

    def __init__(self, server_time_ms: ServerTimeSource, wall: Clock | None = None, window: int = 8,
                 max_wall_wait_s: float = 10.0) -> None:
        if window < 2:
            raise ValueError("window must hold at least two samples to estimate a rate")
        if max_wall_wait_s <= 0:
            raise ValueError("max_wall_wait_s must be positive")
        self._server_time_ms = server_time_ms
        self._wall = wall or WallClock()
        self._samples: deque[tuple[datetime, datetime]] = deque(maxlen=window)  # (wall, venue)
        self._max_wall_wait_s = max_wall_wait_s
        self._rate = 1.0  # until two samples say otherwise
        self._latest: datetime | None = None
        self._sampling = False

    @property
    def rate(self) -> float:
        """Venue seconds per wall second, as last estimated."""
        return self._rate

    async def start(self, settle_s: float = 1.0) -> None:
        """Two samples `settle_s` wall seconds apart, so the first sleep already runs at the venue's rate. The
        source's errors are raised: without the venue there is no market time to start from."""
        await self.sync()
        await self._wall.sleep(settle_s)
        await self.sync()

    async def sync(self) -> None:
        """Sample the venue. A sample already under way is not repeated: the source's own waits (a rate limit)
        sleep on this clock, and their wake-ups would otherwise ask again from inside the sample."""
        if self._sampling:
            return
        self._sampling = True
        try:
            venue = utc_from_ms(await self._server_time_ms())
        finally:
            self._sampling = False
        self._add_sample(self._wall.now(), venue)

    def now(self) -> datetime:
        estimate = self._estimate()
        if self._latest is None or estimate > self._latest:
            self._latest = estimate
        return self._latest

    async def sleep(self, seconds: float) -> None:
        target = self.now() + timedelta(seconds=max(0.0, seconds))
        while (remaining_s := (target - self._estimate()).total_seconds()) > 0:
            await self._wall.sleep(max(_MIN_WALL_WAIT_S, min(remaining_s / self._rate, self._max_wall_wait_s)))
            await self._resample()

    async def _resample(self) -> None:
        try:
            await self.sync()
        except Exception as e:  # the source's errors are its adapter's, unknown here; none may stop a sleeper
            logger.warning("venue clock: no sample (%s); keeping the estimate at %.6gx", e, self._rate)

    def _add_sample(self, wall: datetime, venue: datetime) -> None:
        if self._samples and venue < self._samples[-1][1]:
            self._samples.clear()  # the venue went back (a restarted simulator): its old samples say nothing now
        self._samples.append((wall, venue))
        self._rate = self._estimated_rate()

    def _estimated_rate(self) -> float:
        (wall_0, venue_0), (wall_1, venue_1) = self._samples[0], self._samples[-1]
        wall_s = (wall_1 - wall_0).total_seconds()
        if wall_s <= 0:
            return self._rate
        return max(_MIN_RATE, (venue_1 - venue_0).total_seconds() / wall_s)

    def _estimate(self) -> datetime:
        if not self._samples:
            raise RuntimeError("VenueClock has no sample of the venue yet: await start() first")
        wall, venue = self._samples[-1]
        return venue + (self._wall.now() - wall) * self._rate


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def utc_from_ms(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def ms_from_utc(when: datetime) -> int:
    return (when - EPOCH) // _ONE_MS
