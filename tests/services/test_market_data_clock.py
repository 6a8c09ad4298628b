"""Market data against a venue whose clock runs at 60x ours (the exchange simulator): every cycle sees a fresh candle."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from app.config import BUNDLED_DATA_DIR
from app.domain.clock import ReplayClock, SimulatedClock, ms_from_utc
from app.domain.values import Timeframe
from app.services.binance_service import BinanceService
from app.services.exchange_simulator import ApiAccount, ExchangeSimulator, SimulatorThread, create_simulator_app
from app.services.market_data import CandleStore
from app.services.mock_binance_service import SimulatedMarket

VENUE_START = datetime(2025, 9, 8, tzinfo=UTC)
WALL_START = datetime(2026, 1, 5, 9, 0, 7, tzinfo=UTC)  # our wall clock: nowhere near the venue's
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
        newest.append(candles[-1].close)
    await client.aclose()
    assert len(set(newest)) > 2
