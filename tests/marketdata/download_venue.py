"""The exchange simulator as a download's source: late in the bundled candles, on a clock that records its sleeps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import httpx

from app.config import BUNDLED_DATA_DIR
from app.devtools.faults import FaultPlan
from app.devtools.simulator import ExchangeSimulator, create_simulator_app
from app.domain.clock import SimulatedClock
from app.marketdata.candles import CandleStore
from app.marketdata.download import CandleDownloader, DownloadReport, parse_request
from app.venues.binance.protocol import USED_WEIGHT_HEADER, Endpoint
from app.venues.binance.public_data import BinancePublicData
from app.venues.paper.market import SimulatedMarket

SIM_NOW = datetime(2025, 12, 20, tzinfo=UTC)  # the bundled sample runs to 2025-12-31


@cache
def bundled() -> CandleStore:
    return CandleStore.load(BUNDLED_DATA_DIR, symbols=["BTCUSDT", "ETHUSDT"])


class RecordingClock(SimulatedClock):
    """Simulated time whose sleeps (the pacing and Retry-After waits) are kept for the test to read."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await super().sleep(seconds)


@dataclass
class Venue:
    simulator: ExchangeSimulator
    source: BinancePublicData
    clock: RecordingClock
    weights: list[int] = field(default_factory=list)  # X-MBX-USED-WEIGHT-1M of every answer, in order

    def kline_statuses(self) -> list[int]:
        return [r.status for r in self.simulator.requests if r.path == Endpoint.KLINES]

    def kline_requests(self) -> int:
        return len(self.kline_statuses())

    async def download(self, directory: Path, symbols: str, start: str, end: str | None = None,
                       timeframes: str = "5m,15m,1h") -> DownloadReport:
        return await CandleDownloader(self.source, directory).run(parse_request(symbols, start, end, timeframes))


@asynccontextmanager
async def venue(candles: CandleStore | None = None, *, faults: FaultPlan | None = None, weight_limit: int = 6000,
                now: datetime = SIM_NOW) -> AsyncIterator[Venue]:
    """A simulator served in process (httpx's ASGI transport) on a shared simulated clock."""
    clock = RecordingClock(now)
    simulator = ExchangeSimulator(SimulatedMarket(candles or bundled()), clock, [], faults, weight_limit=weight_limit)
    weights: list[int] = []

    async def note_weight(response: httpx.Response) -> None:
        weights.append(int(response.headers[USED_WEIGHT_HEADER]))

    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_simulator_app(simulator)),
                             event_hooks={"response": [note_weight]})
    try:
        yield Venue(simulator, BinancePublicData("http://sim", clock, http), clock, weights)
    finally:
        await http.aclose()
