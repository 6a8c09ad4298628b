"""The whole trade flow through the real Binance adapter and HTTP against the simulator: the same books as paper."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from pydantic import SecretStr

from app.config import BUNDLED_DATA_DIR, Settings
from app.container import Container, LiveExchanges
from app.db import upgrade
from app.domain.clock import SimulatedClock
from app.domain.records import TradeRecord
from app.domain.values import ExitReason
from app.services.exchange_simulator import ApiAccount, ExchangeSimulator, SimulatorThread, create_simulator_app
from app.services.market_data import CandleStore
from app.services.mock_binance_service import SimulatedMarket
from app.services.security import mask_key

START = datetime(2025, 9, 8, tzinfo=UTC)
SYMBOLS = ("BTCUSDT", "SOLUSDT")
KEY, SECRET = "simkey0123456789", "simsecret0123456789abcdef"


async def _add_user(container: Container, clock: SimulatedClock, with_keys: bool) -> int:
    async with container.uow() as uow:
        user = await uow.users.add("trader", "trader@example.com", "hash", clock.now())
        config = dataclasses.replace(container.default_config(user.id), is_active=True, symbols=SYMBOLS)
        await uow.configs.create(config, clock.now())
        await uow.portfolios.create(user.id, Decimal("10000"), clock.now())
        if with_keys:
            await uow.credentials.upsert(user.id, container.cipher.encrypt(KEY), container.cipher.encrypt(SECRET),
                                         mask_key(KEY), "testnet", clock.now())
        else:
            await container.open_paper_account(uow, user.id)
        await uow.commit()
    return user.id


async def _run(container: Container, clock: SimulatedClock, user_id: int, hours: int) -> list[TradeRecord]:
    for _ in range(hours * 12):
        clock.advance(timedelta(minutes=5))
        await container.bot.run_cycle(clock.now())
    trade = next((t for t in (await container.bot_trades(user_id)) if t.exit_reason is None), None)
    if trade is not None:  # and one manual close through the same path as the API's
        await container.bot.close_trade(user_id, trade.id, ExitReason.MANUAL)
    return await container.bot_trades(user_id)


def _facts(trades: list[TradeRecord]) -> list[tuple[object, ...]]:
    return [(t.symbol, t.executed_at, t.amount, t.price, t.stop_loss, t.take_profit, t.exit_reason, t.exit_price,
             t.fees, t.profit_loss, t.closed_at) for t in sorted(trades, key=lambda t: t.id)]


async def test_live_adapter_through_the_simulator_books_what_paper_books(settings: Settings, tmp_path: Path) -> None:
    live_clock, paper_clock = SimulatedClock(START), SimulatedClock(START)
    market = SimulatedMarket(CandleStore.load(BUNDLED_DATA_DIR, symbols=SYMBOLS),
                             slippage_pct=settings.sim_slippage_pct, fee_rate=settings.sim_fee_rate)
    simulator = ExchangeSimulator(market, live_clock, [ApiAccount(KEY, SECRET, {"USDT": Decimal("10000")})])
    server = SimulatorThread(create_simulator_app(simulator)).start()
    live_url = f"sqlite+aiosqlite:///{tmp_path}/live.db"
    await asyncio.to_thread(upgrade, live_url)
    live_settings = settings.model_copy(update={
        "database_url": live_url, "use_mock_binance": False, "binance_base_url": server.base_url,
        "binance_api_key": SecretStr(KEY), "binance_secret_key": SecretStr(SECRET),
    })
    live = Container(live_settings, market_clock=live_clock)
    paper = Container(settings, market_clock=paper_clock)
    try:
        assert isinstance(live.exchanges, LiveExchanges)
        live_trades = await _run(live, live_clock, await _add_user(live, live_clock, True), hours=48)
        paper_trades = await _run(paper, paper_clock, await _add_user(paper, paper_clock, False), hours=48)
    finally:
        server.stop()
        await live.db.dispose()
        await paper.db.dispose()
    reasons = {t.exit_reason for t in live_trades}
    assert ExitReason.MANUAL in reasons and len(reasons) >= 3, reasons
    assert _facts(live_trades) == _facts(paper_trades)
