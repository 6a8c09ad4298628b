"""A live-mode engine (BinanceService per user) trading through HTTP against the exchange simulator."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from pydantic import SecretStr

from app.config import BUNDLED_DATA_DIR, Settings
from app.container import Container
from app.db import upgrade
from app.devtools.faults import FaultPlan
from app.devtools.simulator import ApiAccount, ExchangeSimulator, create_simulator_app
from app.devtools.simulator_thread import SimulatorThread
from app.domain.clock import SimulatedClock
from app.domain.records import TradeRecord
from app.domain.values import ZERO, TradeStatus
from app.marketdata.candles import CandleStore
from app.services.security import mask_key
from app.venues.paper.market import SimulatedMarket
from tests.books import carried_cost

START = datetime(2025, 9, 8, tzinfo=UTC)
SYMBOLS = ("BTCUSDT", "SOLUSDT")
KEY, SECRET = "simkey0123456789", "simsecret0123456789abcdef"
BALANCE = Decimal("10000")


async def add_user(container: Container, clock: SimulatedClock, secret: str | None,
                   symbols: tuple[str, ...] = SYMBOLS) -> int:
    """An active user: with exchange keys (live) or, when `secret` is None, a funded paper account."""
    async with container.uow() as uow:
        user = await uow.users.add("trader", "trader@example.com", "hash", clock.now())
        config = dataclasses.replace(container.default_config(user.id), is_active=True, symbols=symbols)
        await uow.configs.create(config, clock.now())
        await uow.portfolios.create(user.id, BALANCE, clock.now())
        if secret is not None:
            await uow.credentials.upsert(user.id, container.cipher.encrypt(KEY), container.cipher.encrypt(secret),
                                         mask_key(KEY), "testnet", clock.now())
        else:
            await container.open_paper_account(uow, user.id)
        await uow.commit()
    return user.id


async def run_hours(container: Container, clock: SimulatedClock, hours: int) -> None:
    for _ in range(hours * 12):
        clock.advance(timedelta(minutes=5))
        await container.bot.run_cycle(clock.now())


def market(settings: Settings, data_dir: Path | None = None) -> SimulatedMarket:
    candles = CandleStore.load(data_dir) if data_dir else CandleStore.load(BUNDLED_DATA_DIR, symbols=SYMBOLS)
    return SimulatedMarket(candles, slippage_pct=settings.sim_slippage_pct, fee_rate=settings.sim_fee_rate)


@dataclass
class LiveRun:
    container: Container
    clock: SimulatedClock
    user_id: int
    simulator: ExchangeSimulator
    server: SimulatorThread

    async def trades(self) -> list[TradeRecord]:
        return await self.container.bot_trades(self.user_id)

    def exchange_orders(self) -> list[object]:
        return self.server.run(self.simulator.account(KEY).list_orders())

    def open_lists(self) -> set[str]:
        lists = self.server.run(self.simulator.account(KEY).get_open_oco_orders())
        return {o.list_client_order_id for o in lists}

    def usdt(self) -> Decimal:
        return self.server.run(self.simulator.account(KEY).get_account_balance("USDT")).total

    async def assert_books_match_the_exchange(self) -> None:
        """No order sent twice, every position protected on the exchange, and USDT equal to what the books say."""
        orders = self.exchange_orders()
        ids = [o.client_order_id for o in orders]  # type: ignore[attr-defined]
        assert len(ids) == len(set(ids)), "an order was sent twice"
        async with self.container.uow() as uow:
            positions = await uow.positions.for_user(self.user_id)
        open_lists = self.open_lists()
        assert all(p.oco_order_id in open_lists for p in positions), "a position is without protection"
        assert len(open_lists) == len(positions), "a protection list is left without a position"
        trades = await self.trades()
        open_cost = sum((t.amount * t.price for t in trades if t.status == TradeStatus.FILLED), ZERO)
        realised = sum((t.profit_loss or ZERO for t in trades if t.status == TradeStatus.CLOSED), ZERO)
        carried = await carried_cost(self.container.uow, self.user_id, {t.symbol for t in trades})
        assert self.usdt() + carried == BALANCE + realised - open_cost


@asynccontextmanager
async def live_engine(settings: Settings, tmp_path: Path, faults: FaultPlan | None = None,
                      secret: str = SECRET, venue_data: Path | None = None,
                      symbols: tuple[str, ...] = SYMBOLS) -> AsyncIterator[LiveRun]:
    """`venue_data`: the simulated venue's candles and rules (default: the bundled sample's BTC and SOL)."""
    clock = SimulatedClock(START)
    simulator = ExchangeSimulator(market(settings, venue_data), clock, [ApiAccount(KEY, SECRET, {"USDT": BALANCE})],
                                  faults)
    server = SimulatorThread(create_simulator_app(simulator)).start()
    url = f"sqlite+aiosqlite:///{tmp_path}/live.db"
    await asyncio.to_thread(upgrade, url)
    live_settings = settings.model_copy(update={
        "database_url": url, "use_mock_binance": False, "binance_base_url": server.base_url,
        "binance_api_key": SecretStr(KEY), "binance_secret_key": SecretStr(SECRET),
    })
    container = Container(live_settings, market_clock=clock)
    try:
        yield LiveRun(container, clock, await add_user(container, clock, secret, symbols), simulator, server)
    finally:
        server.stop()
        await container.db.dispose()
