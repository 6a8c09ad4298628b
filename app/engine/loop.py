"""The live loop: a cycle on every interval boundary of the injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from app.background import cancel_and_wait
from app.domain.clock import Clock, ms_from_utc, utc_from_ms
from app.engine.bot import TradingBot
from app.engine.settings import log, metrics_log


class TradingLoop:
    """Calls `run_cycle` every interval on the injected clock until stopped."""

    def __init__(self, bot: TradingBot, clock: Clock, interval_s: int,
                 observe: Callable[[float], None] | None = None) -> None:
        self.bot, self.clock, self.interval_s = bot, clock, interval_s
        self.observe = observe
        self.next_cycle_at: datetime | None = None
        self._task: asyncio.Task[None] | None = None

    def _aligned(self, now: datetime) -> datetime:
        """Cycles run on interval boundaries (12:00, 12:05, ...) so every cycle sees freshly closed candles."""
        step = self.interval_s * 1000
        return utc_from_ms((ms_from_utc(now) // step + 1) * step)

    async def trading_loop(self) -> None:
        while True:
            now = self.clock.now()
            self.next_cycle_at = self._aligned(now)
            await self.clock.sleep((self.next_cycle_at - now).total_seconds())
            started = asyncio.get_running_loop().time()
            try:
                summary = await self.bot.run_cycle(self.next_cycle_at)
            except Exception:  # one bad cycle must not stop the engine
                log.exception("cycle at %s failed", self.next_cycle_at.isoformat())
                continue
            elapsed = asyncio.get_running_loop().time() - started
            metrics_log.info("cycle=%s seconds=%.3f analyses=%d entries=%d exits=%d rejections=%s",
                             summary.time.isoformat(), elapsed, summary.analyses, summary.entries, summary.exits,
                             dict(sorted(summary.rejections.items())))
            if self.observe is not None:
                self.observe(elapsed)
            await self.bot.keep_house(self.next_cycle_at)  # between cycles, off the cycle's clock

    def start(self) -> None:
        self._task = asyncio.create_task(self.trading_loop(), name="trading-loop")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
