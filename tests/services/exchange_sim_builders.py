"""Builders for exchange tests: a scripted BTCUSDT candle path, the simulated market, and the simulator on HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from app.devtools.faults import FaultPlan
from app.devtools.simulator import ApiAccount, ExchangeSimulator, create_simulator_app
from app.devtools.simulator_thread import SimulatorThread
from app.domain.clock import SimulatedClock, ms_from_utc
from app.domain.values import OcoOrder, Order
from app.marketdata.candle_files import HEADER
from app.marketdata.candles import CandleStore
from app.venues.binance.client import BinanceService
from app.venues.paper.market import SimulatedMarket
from tests.bundled import store_bundled_rules

T0 = datetime(2025, 1, 1, tzinfo=UTC)
KEY = "sim-test-key-0123456789"
SECRET = "sim-test-secret-NOT-REAL-0123456789abcdef"
START_BALANCES = {"USDT": Decimal("10000")}
FLAT = ("100", "100.5", "99.5", "100")

# 5m candles from T0: two quiet hours, then a take-profit touch, a stop-loss fill, a gap through a stop, a drift,
# and a gap back up
CANDLE_PATH: list[tuple[str, str, str, str]] = [
    *[FLAT] * 25,  # 0-24: 00:00-02:05
    ("100", "111", "99.5", "105"),  # 25: 02:05, reaches 110 without touching 95
    ("105", "105.5", "104.5", "105"),  # 26
    ("105", "106", "98.5", "99"),  # 27: 02:15, through 100 and back above 99
    ("99", "99.5", "98.5", "99"),  # 28
    ("92", "93", "90", "91"),  # 29: 02:25, opens below 95 and never trades back up to 94
    *[("91", "91.5", "90.5", "91")] * 30,  # 30-59
    ("95", "96", "94.5", "95.5"),  # 60: 05:00, opens at 95 after a close at 91
]


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def write_candles(directory: Path, path: list[tuple[str, str, str, str]] = CANDLE_PATH) -> CandleStore:
    start = ms_from_utc(T0)
    rows = [f"{start + i * 300_000},{o},{h},{lo},{c},1" for i, (o, h, lo, c) in enumerate(path)]
    (directory / "binance_BTCUSDT_5m.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    store_bundled_rules(directory)
    return CandleStore.load(directory)


def make_market(directory: Path) -> SimulatedMarket:
    return SimulatedMarket(write_candles(directory), slippage_pct=Decimal("0.02"), fee_rate=Decimal("0.001"))


@dataclass
class HttpExchange:
    """BinanceService talking HTTP to the simulator served in a background thread, on a shared clock."""

    service: BinanceService
    simulator: ExchangeSimulator
    server: SimulatorThread
    clock: SimulatedClock

    def orders(self) -> list[Order]:
        """What the exchange holds, read on the server's own loop."""
        return self.server.run(self.simulator.account(KEY).list_orders())

    def order_lists(self) -> list[OcoOrder]:
        return self.server.run(self.simulator.account(KEY).list_order_lists())

    def statuses(self, path: str) -> list[int]:
        return [r.status for r in self.simulator.requests if r.path == path]


@asynccontextmanager
async def http_exchange(
    market: SimulatedMarket,
    clock: SimulatedClock,
    faults: FaultPlan | None = None,
    secret: str = SECRET,
    timeout_s: float = 5.0,
) -> AsyncIterator[HttpExchange]:
    simulator = ExchangeSimulator(market, clock, [ApiAccount(KEY, SECRET, START_BALANCES)], faults)
    server = SimulatorThread(create_simulator_app(simulator)).start()
    service = BinanceService(KEY, secret, server.base_url, clock, timeout_s=timeout_s, max_retry_wait_s=600)
    try:
        yield HttpExchange(service, simulator, server, clock)
    finally:
        await service.aclose()
        server.stop()
