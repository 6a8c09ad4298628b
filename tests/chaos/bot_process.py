"""The chaos suite's bot: the live engine in a process of its own, on the venue's clock, for the harness to kill -9.

Run as `python -m tests.chaos.bot_process` with the service's environment (DATABASE_URL, USE_MOCK_BINANCE=false,
BINANCE_BASE_URL=<simulator>, CREDENTIALS_KEY, ...) plus:

- CHAOS_SPEED: market seconds per wall second of the venue (its replay speed);
- CHAOS_HOLD_FIRST=1: the venue is held already: run the first cycle at real time and hold after it;
- CHAOS_ANALYST_SEED, CHAOS_BUY_PCT: the eager analyst's coin;
- CHAOS_LOG: where the engine's log goes (stdout is the protocol).

Protocol: the process writes `CHAOS <event> key=value ...` lines (`started`, `cycle`, `paused`, `held`, `start-failed`)
and reads commands on stdin, for a still picture: `pause` (after the cycle in progress it sends nothing and answers
`paused last=<its last cycle time>`), then, once the harness has jumped the venue past that time and slowed it to real
time, `settle` (one cycle at the venue's new time, then `held`), then `go` (trade on at full speed). End of stdin
(the harness died) ends the process.

With `--spawner` it is a fork server instead: it imports the app once, then for each JSON request on stdin
(`env`, `cwd`, `stdin`, `stdout`, `stderr` paths; the first two are FIFOs the harness made) forks a bot and prints its
pid. A bot so started is still a process of its own that kill -9 ends mid-step; it only skips 1-2 s of imports.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx

from app.config import Settings
from app.container import Container
from app.domain.clock import ms_from_utc, utc_from_ms
from app.domain.values import MarketFeatures, Signal, SignalType
from app.engine.bot import TradingBot
from tests.chaos.clock import CYCLE_MS, HOLD_SPEED

ANALYST = "chaos"
log = logging.getLogger("chaos.bot")


def emit(event: str, **fields: object) -> None:
    text = " ".join(f"{k}={v}" for k, v in fields.items())
    print(f"CHAOS {event} {text}".rstrip(), flush=True)


class BotClock:
    """Market time following the venue: its GET /api/v3/time, extrapolated at the venue's speed between reads."""

    def __init__(self, base_url: str, speed: float, http: httpx.AsyncClient) -> None:
        self.base_url, self.speed, self._http = base_url.rstrip("/"), speed, http
        self.rate = speed
        self._venue_ms = 0
        self._mono = time.monotonic()

    def now_ms(self) -> int:
        return self._venue_ms + int((time.monotonic() - self._mono) * 1000 * self.rate)

    def now(self) -> datetime:
        return utc_from_ms(self.now_ms())

    async def sleep(self, seconds: float) -> None:
        """In steps, so that a jump of the venue's time (a resync) or a change of speed ends it early."""
        until_ms = self.now_ms() + seconds * 1000
        while (left_ms := until_ms - self.now_ms()) > 0:
            await asyncio.sleep(min(0.05, left_ms / 1000 / self.rate))

    async def sync(self, attempts: int = 200) -> bool:
        """Read the venue's time (its faults included: a failed read is retried a little later)."""
        for _ in range(attempts):
            try:
                answer = await self._http.get(f"{self.base_url}/api/v3/time")
                if answer.status_code == 200:
                    self._venue_ms, self._mono = int(answer.json()["serverTime"]), time.monotonic()
                    return True
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            await asyncio.sleep(0.02)
        return False


class EagerAnalyst:
    """Buys often (a seeded coin per symbol and cycle, the same after a restart), so a short run has many entries
    and exits to break; the risk manager still sets the size, the stop and the target."""

    name = ANALYST

    def __init__(self, seed: int, buy_pct: int) -> None:
        self.seed, self.buy_pct = seed, buy_pct

    async def analyze(self, features: MarketFeatures) -> Signal:
        coin = hashlib.sha256(f"{self.seed}:{features.symbol}:{ms_from_utc(features.time)}".encode()).digest()[0]
        if coin * 100 // 256 >= self.buy_pct:
            return Signal.hold("chaos: not this cycle")
        price = features.last_price
        return Signal(SignalType.BUY, 90, price, price * Decimal("0.985"), price * Decimal("1.03"), "chaos: buy")


class Commands:
    """`pause`, `settle` and `go` from stdin, read by a thread; end of stdin ends the process (the harness is gone)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.pause, self.settle, self.go = asyncio.Event(), asyncio.Event(), asyncio.Event()
        threading.Thread(target=self._read, name="chaos-commands", daemon=True).start()

    def _read(self) -> None:
        for line in sys.stdin:
            event = {"pause": self.pause, "settle": self.settle, "go": self.go}.get(line.strip())
            if event is not None:
                self._loop.call_soon_threadsafe(event.set)
        os._exit(0)

    @staticmethod
    async def next(event: asyncio.Event) -> None:
        await event.wait()
        event.clear()


async def run_cycles(bot: TradingBot, clock: BotClock, commands: Commands, hold_first: bool) -> None:
    """A cycle at each 5-minute boundary the venue reaches (boundaries missed while a cycle ran are skipped)."""
    last_ms: int | None = None
    hold_next = hold_first
    while True:
        if commands.pause.is_set():
            await still_picture_cycle_ahead(clock, commands, last_ms)
            hold_next = True
        await clock.sync()
        now_ms = clock.now_ms()
        cycle_ms = now_ms // CYCLE_MS * CYCLE_MS
        if last_ms is not None and cycle_ms <= last_ms:
            wait_s = min(1.0, (last_ms + CYCLE_MS - now_ms) / 1000 / clock.rate) + 0.002
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(commands.pause.wait(), wait_s)
            continue
        await run_one(bot, cycle_ms)
        last_ms = cycle_ms
        if hold_next:
            emit("held", t=cycle_ms)
            await commands.next(commands.go)
            clock.rate, hold_next = clock.speed, False


async def still_picture_cycle_ahead(clock: BotClock, commands: Commands, last_ms: int | None) -> None:
    """Paused between cycles until the harness has held the venue past `last_ms`; then at the venue's pace."""
    commands.pause.clear()
    emit("paused", last=last_ms if last_ms is not None else 0)
    await commands.next(commands.settle)
    clock.rate = HOLD_SPEED


async def run_one(bot: TradingBot, cycle_ms: int) -> None:
    started = time.monotonic()
    try:
        summary = await bot.run_cycle(utc_from_ms(cycle_ms))
    except Exception as e:  # the live loop carries on after a failed cycle; so does this one
        log.exception("cycle at %s failed", cycle_ms)
        emit("cycle", t=cycle_ms, ok=0, error=type(e).__name__, wall_s=f"{time.monotonic() - started:.3f}")
        return
    emit("cycle", t=cycle_ms, ok=1, entries=summary.entries, exits=summary.exits,
         wall_s=f"{time.monotonic() - started:.3f}")


async def main() -> int:
    logging.basicConfig(filename=os.environ.get("CHAOS_LOG", "chaos-bot.log"), level=logging.INFO,
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    assert settings.binance_base_url, "BINANCE_BASE_URL must name the simulator"
    http = httpx.AsyncClient(timeout=5.0)
    clock = BotClock(settings.binance_base_url, float(os.environ["CHAOS_SPEED"]), http)
    hold_first = os.environ.get("CHAOS_HOLD_FIRST") == "1"
    if hold_first:
        clock.rate = HOLD_SPEED
    container = Container(settings, market_clock=clock)
    container.analysts[ANALYST] = EagerAnalyst(int(os.environ.get("CHAOS_ANALYST_SEED", "0")),
                                               int(os.environ.get("CHAOS_BUY_PCT", "50")))
    try:
        await clock.sync()
        await container.start(migrate=False)
    except Exception as e:
        log.exception("start failed")
        emit("start-failed", error=type(e).__name__)
        return 3
    emit("started", pid=os.getpid())
    commands = Commands(asyncio.get_running_loop())
    await run_cycles(container.bot, clock, commands, hold_first)
    return 0


def serve_spawns() -> int:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the bots: none lingers as a zombie
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _run_spawned(request)
            except BaseException:
                traceback.print_exc()  # into the bot's stderr file
            finally:
                os._exit(code)
        print(pid, flush=True)
    return 0


def _run_spawned(request: dict[str, Any]) -> int:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    # the harness holds the reading end of stdout open already; stdin opens once it opens the writing end
    for fd, path, flags in ((2, request["stderr"], os.O_WRONLY | os.O_APPEND | os.O_CREAT),
                            (1, request["stdout"], os.O_WRONLY), (0, request["stdin"], os.O_RDONLY)):
        opened = os.open(path, flags, 0o644)
        os.dup2(opened, fd)
        os.close(opened)
    # fresh file objects: the spawner's may hold its own buffered requests
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 - the process's own stdin
    sys.stdout = open(1, "w", encoding="utf-8", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", buffering=1, closefd=False)  # noqa: SIM115
    return asyncio.run(main())


if __name__ == "__main__":
    sys.exit(serve_spawns() if "--spawner" in sys.argv else asyncio.run(main()))
