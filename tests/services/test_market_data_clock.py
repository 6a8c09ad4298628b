"""Market data against a venue whose clock runs at 60x ours (the exchange simulator): every cycle sees a fresh candle."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from app.config import BUNDLED_DATA_DIR, Settings
from app.container import Container, LiveExchanges, PaperExchanges
from app.devtools.simulator import ApiAccount, ExchangeSimulator, create_simulator_app
from app.devtools.simulator_thread import SimulatorThread
from app.domain.clock import ReplayClock, SimulatedClock, VenueClock, ms_from_utc
from app.domain.errors import ConfigurationError
from app.domain.ports import ExchangeAdapter
from app.domain.values import Candle, Timeframe
from app.engine.bot import CycleSummary
from app.engine.loop import TradingLoop
from app.marketdata.candles import CandleStore
from app.venues.binance.client import BinanceService
from app.venues.paper.market import SimulatedMarket

VENUE_START = datetime(2025, 9, 8, tzinfo=UTC)
WALL_START = datetime(2026, 1, 5, 9, 0, 7, tzinfo=UTC)  # our wall clock: nowhere near the venue's
CYCLES = 6  # 5 venue minutes each: 5 wall seconds at SPEED
SPEED = 60
M5_MS = Timeframe.M5.ms


@pytest.fixture
def wall() -> SimulatedClock:
    return SimulatedClock(WALL_START)


@pytest.fixture
def venue(wall: SimulatedClock) -> ReplayClock:
    return ReplayClock(VENUE_START, SPEED, wall=wall)


@pytest.fixture
def server(venue: ReplayClock) -> Iterator[SimulatorThread]:
    market = SimulatedMarket(CandleStore.load(BUNDLED_DATA_DIR, symbols=("BTCUSDT",)))
    simulator = ExchangeSimulator(market, venue, [ApiAccount("key", "secret", {"USDT": Decimal(1)})])
    with SimulatorThread(create_simulator_app(simulator)) as thread:
        yield thread


def newest_closed_open_ms(venue: ReplayClock) -> int:
    return (ms_from_utc(venue.now()) // M5_MS - 1) * M5_MS


async def test_market_data_on_the_wall_clock_sees_a_fresh_candle_every_cycle_of_a_60x_venue(
        wall: SimulatedClock, venue: ReplayClock, server: SimulatorThread) -> None:
    """MARKET_CLOCK=wall: cycles every 5 wall minutes are 5 venue hours; the offset measured at start-up is hours
    stale by the next cycle, so the closed-candle check must use a current one."""
    client = BinanceService("", "", server.base_url, wall)
    await client.sync_time()
    newest = []
    for _ in range(10):
        wall.advance(timedelta(minutes=5))
        candles = await client.get_klines("BTCUSDT", Timeframe.M5, 288)
        assert len(candles) == 288
        assert candles[-1].open_time_ms == newest_closed_open_ms(venue)
        newest.append(candles[-1].open_time_ms)
    await client.aclose()
    assert len(set(newest)) == 10


class NewestCandleReader:
    """Stands in for the bot in the TradingLoop: each cycle reads the 5m candles, as run_cycle's market-data step
    does, and keeps the newest; after `cycles` it waits to be stopped."""

    def __init__(self, market_data: ExchangeAdapter, venue: ReplayClock, wall: SimulatedClock, cycles: int) -> None:
        self.market_data, self.venue, self.wall, self.cycles = market_data, venue, wall, cycles
        self.seen: list[tuple[datetime, datetime, Candle, int]] = []  # cycle time, wall time, newest candle, and the
        self.done = asyncio.Event()                                    # venue's newest closed one

    async def run_cycle(self, now: datetime) -> CycleSummary:
        if len(self.seen) == self.cycles:
            await asyncio.Event().wait()
        candles = await self.market_data.get_klines("BTCUSDT", Timeframe.M5, 288)
        self.seen.append((now, self.wall.now(), candles[-1], newest_closed_open_ms(self.venue)))
        if len(self.seen) == self.cycles:
            self.done.set()
        return CycleSummary(now)

    async def keep_house(self, now: datetime) -> None:
        """The loop's step between cycles: nothing to tidy here."""


async def test_a_venue_clock_deployment_cycles_every_5_venue_minutes_and_sees_each_candle_close(
        settings: Settings, wall: SimulatedClock, venue: ReplayClock, server: SimulatorThread) -> None:
    """MARKET_CLOCK=venue: the market clock follows the simulator at 60x, so the TradingLoop's 5-minute cycles are
    the venue's 5 minutes (5 wall seconds), and each cycle sees the candle that closed at its start."""
    live = settings.model_copy(update={"use_mock_binance": False, "binance_base_url": server.base_url,
                                       "market_clock": "venue"})
    container = Container(live, clock=wall)
    await container.start(migrate=False)
    clock = container.market_clock
    assert isinstance(clock, VenueClock) and clock.rate == SPEED
    assert container.bot.clock is clock and isinstance(container.exchanges, LiveExchanges)
    assert container.exchanges.clock is clock  # every timer of the live path is in market time
    reader = NewestCandleReader(container.market_data, venue, wall, cycles=CYCLES)
    loop = TradingLoop(reader, clock, 300)  # type: ignore[arg-type]  # only run_cycle and keep_house are used
    loop.start()
    # a guard against a hang, not a timing assertion: the cycles take CYCLES x 5 s, more on a loaded machine
    await asyncio.wait_for(reader.done.wait(), timeout=180)
    await loop.stop()
    await container.stop()
    times, walls = [seen[0] for seen in reader.seen], [seen[1] for seen in reader.seen]
    assert times == [times[0] + timedelta(minutes=5 * i) for i in range(CYCLES)]
    assert walls == [walls[0] + timedelta(seconds=300 / SPEED * i) for i in range(CYCLES)]
    assert all(candle.open_time_ms == venue_newest for _, _, candle, venue_newest in reader.seen)
    assert [candle.open_time_ms for _, _, candle, _ in reader.seen] == [ms_from_utc(t) - M5_MS for t in times]


async def test_paper_on_the_live_market_can_follow_the_venue_clock(
        settings: Settings, wall: SimulatedClock, venue: ReplayClock, server: SimulatorThread) -> None:
    """MARKET_SOURCE=live with MARKET_CLOCK=venue: the paper accounts run on the market source's own time."""
    paper = settings.model_copy(update={"market_source": "live", "binance_base_url": server.base_url,
                                        "market_clock": "venue"})
    container = Container(paper, clock=wall)
    await container.start(migrate=False)
    clock = container.market_clock
    assert isinstance(clock, VenueClock) and clock.rate == SPEED
    assert isinstance(container.exchanges, PaperExchanges) and container.exchanges.clock is clock
    assert container.bot.clock is clock
    candles = await container.market_data.get_klines("BTCUSDT", Timeframe.M5, 3)
    assert candles[-1].open_time_ms == newest_closed_open_ms(venue)
    await container.stop()


async def test_a_venue_clock_that_cannot_read_the_venue_stops_the_start_naming_the_setting(
        settings: Settings, wall: SimulatedClock) -> None:
    with socket.socket() as unused:  # a port nobody listens on: the connection is refused at once
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}"
    live = settings.model_copy(update={"use_mock_binance": False, "binance_base_url": url, "market_clock": "venue"})
    container = Container(live, clock=wall)
    with pytest.raises(ConfigurationError, match="MARKET_CLOCK=venue: the venue's server time cannot be read"):
        await container.start(migrate=False)
    await container.stop()
