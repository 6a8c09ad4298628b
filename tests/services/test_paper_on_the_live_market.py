"""Paper trading on the live market (MARKET_SOURCE=live): paper accounts on the exchange simulator's public data."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from app.config import BUNDLED_DATA_DIR, Settings
from app.container import Container, DatabaseSimAccountStore, PaperExchanges, paper_account_id
from app.db import upgrade
from app.devtools.simulator import ExchangeSimulator, create_simulator_app
from app.devtools.simulator_thread import SimulatorThread
from app.domain.clock import SimulatedClock, ms_from_utc
from app.domain.records import TradeRecord
from app.domain.values import ZERO, ExitReason, OrderStatus, OrderType, Side, Timeframe, TradeStatus
from app.marketdata.candles import CandleStore
from app.marketdata.directory import CandleDirectory
from app.venues.binance.directory import VenueDirectory
from app.venues.paper.accounts import SimAccountState
from app.venues.paper.live_market import LiveMarket
from app.venues.paper.market import SimulatedMarket
from tests.books import carried_cost
from tests.services.live_harness import run_hours

pytestmark = pytest.mark.one_engine  # the market source is under test; the SQL is the engine tests'

XRP = "XRPUSDT"  # outside the bundled four: the bot has no candle file and no stored rules for it
START = datetime(2025, 9, 9, 7, 30, tzinfo=UTC)
HOURS = 30  # a stop-loss, a timeout and a take-profit on these candles
BALANCE = Decimal("10000")
FIVE_MIN = timedelta(minutes=5)


def source_candles(directory: Path) -> SimulatedMarket:
    """The simulator's market: real 5m candles (BNB's) saved as XRPUSDT, without a rules file (it infers them)."""
    directory.mkdir()
    shutil.copy(BUNDLED_DATA_DIR / "binance_BNBUSDT_5m.csv.gz", directory / f"binance_{XRP}_5m.csv.gz")
    return SimulatedMarket(CandleStore.load(directory))


async def add_paper_user(container: Container, clock: SimulatedClock) -> int:
    async with container.uow() as uow:
        user = await uow.users.add("trader", "trader@example.com", "hash", clock.now())
        config = dataclasses.replace(container.default_config(user.id), is_active=True, symbols=(XRP,))
        await uow.configs.create(config, clock.now())
        await uow.portfolios.create(user.id, BALANCE, clock.now())
        await container.open_paper_account(uow, user.id)
        await uow.commit()
    return user.id


@dataclass
class PaperRun:
    container: Container
    clock: SimulatedClock
    user_id: int
    source: SimulatedMarket  # what the simulator serves: the market's truth

    async def trades(self) -> list[TradeRecord]:
        return await self.container.bot_trades(self.user_id)

    async def account(self) -> SimAccountState:
        """The paper account as stored in the database, not the bot's memory of it."""
        state = await DatabaseSimAccountStore(self.container.uow, self.clock).load(paper_account_id(self.user_id))
        assert state is not None
        return state


@asynccontextmanager
async def paper_on_the_simulator(settings: Settings, tmp_path: Path) -> AsyncIterator[PaperRun]:
    clock = SimulatedClock(START)
    source = source_candles(tmp_path / "venue")
    server = SimulatorThread(create_simulator_app(ExchangeSimulator(source, clock, []))).start()
    url = f"sqlite+aiosqlite:///{tmp_path}/paper.db"
    await asyncio.to_thread(upgrade, url)
    (tmp_path / "no-candles").mkdir()
    paper_settings = settings.model_copy(update={
        "database_url": url, "market_source": "live", "binance_base_url": server.base_url,
        "market_data_dir": tmp_path / "no-candles", "default_symbols": (XRP,),
    })
    container = Container(paper_settings, market_clock=clock)
    try:
        yield PaperRun(container, clock, await add_paper_user(container, clock), source)
    finally:
        server.stop()
        await container.stop()  # closes its client of the simulator, and the database


def touched(run: PaperRun, trade: TradeRecord, open_ms: int) -> tuple[bool, bool]:
    """Whether the source's 5m candle opening at `open_ms` reached the take-profit, and the stop."""
    candle = run.source.candles.candles_between(XRP, Timeframe.M5, open_ms, open_ms + 1)[0]
    return candle.high >= trade.take_profit, candle.low <= trade.stop_loss


def assert_closed_at_the_first_source_candle_touching_a_leg(run: PaperRun, trade: TradeRecord) -> None:
    """The OCO rests from the first candle opening after it was placed; the candle that closed it is the first
    one that reached a leg, and it closed at that candle's close."""
    assert trade.closed_at is not None
    closing_ms = ms_from_utc(trade.closed_at - FIVE_MIN)
    for open_ms in range(ms_from_utc(trade.executed_at), closing_ms, Timeframe.M5.ms):
        assert touched(run, trade, open_ms) == (False, False)
    reached_tp, reached_stop = touched(run, trade, closing_ms)
    assert reached_tp if trade.exit_reason == ExitReason.TAKE_PROFIT else reached_stop
    if trade.exit_reason == ExitReason.TAKE_PROFIT:
        assert trade.exit_price == trade.take_profit


async def test_paper_on_the_live_market_trades_a_pair_it_has_no_candles_for_at_the_source_prices(
        settings: Settings, tmp_path: Path) -> None:
    async with paper_on_the_simulator(settings, tmp_path) as run:
        container = run.container
        assert isinstance(container.exchanges, PaperExchanges) and isinstance(container.exchanges.market, LiveMarket)
        assert isinstance(container.symbols, VenueDirectory) and container.candles.symbols() == []
        await run_hours(container, run.clock, HOURS)
        trades, account = await run.trades(), await run.account()
        carried = await carried_cost(container.uow, run.user_id, {XRP})  # what the books charged for dust

    assert {t.symbol for t in trades} == {XRP}
    assert {ExitReason.STOP_LOSS, ExitReason.TIMEOUT, ExitReason.TAKE_PROFIT} <= {t.exit_reason for t in trades}
    rules = run.source.rules(XRP)  # what the simulator's exchangeInfo says (inferred from its candles there)
    slippage = 1 + settings.sim_slippage_pct / 100
    entries = {o.client_order_id: o for o in account.orders.values() if o.side == Side.BUY}
    for trade in trades:
        source_price = run.source.last_price(XRP, ms_from_utc(trade.executed_at))
        assert trade.price == rules.round_price_up(source_price * slippage)
        assert entries[trade.entry_client_order_id].fills[0].price == trade.price  # the account's own fill
        if trade.exit_reason in (ExitReason.TAKE_PROFIT, ExitReason.STOP_LOSS):
            assert_closed_at_the_first_source_candle_touching_a_leg(run, trade)

    # the books are what the paper account holds, to the last Decimal digit
    exits = {(o.transact_ms, o.fills[0].price) for o in account.orders.values()
             if o.side == Side.SELL and o.status == OrderStatus.FILLED}
    closed = [t for t in trades if t.status == TradeStatus.CLOSED]
    assert exits == {(ms_from_utc(t.closed_at), t.exit_price) for t in closed if t.closed_at is not None}
    open_cost = sum((t.amount * t.price for t in trades if t.status == TradeStatus.FILLED), ZERO)
    realised = sum((t.profit_loss or ZERO for t in closed), ZERO)
    free_usdt, locked_usdt = account.balances["USDT"]
    assert free_usdt + locked_usdt + carried == BALANCE + realised - open_cost
    held = [o for o in account.orders.values() if o.type == OrderType.STOP_LOSS_LIMIT and not o.status.is_final]
    assert account.balances[rules.base_asset][1] == sum((o.orig_qty for o in held), ZERO)


async def test_paper_on_the_live_market_books_what_the_replay_books(settings: Settings, tmp_path: Path) -> None:
    """The same candles replayed from a file (MARKET_SOURCE=replay) give the same trades, fill for fill."""
    async with paper_on_the_simulator(settings, tmp_path) as run:
        await run_hours(run.container, run.clock, HOURS)
        on_the_live_market = await run.trades()
    replay_clock = SimulatedClock(START)
    replay = Container(settings.model_copy(update={"market_data_dir": tmp_path / "venue", "default_symbols": (XRP,)}),
                       market_clock=replay_clock)
    assert isinstance(replay.symbols, CandleDirectory)
    user_id = await add_paper_user(replay, replay_clock)
    await run_hours(replay, replay_clock, HOURS)
    replayed = await replay.bot_trades(user_id)
    await replay.db.dispose()
    assert len(replayed) >= 3
    assert [_facts(t) for t in on_the_live_market] == [_facts(t) for t in replayed]


def _facts(t: TradeRecord) -> tuple[object, ...]:
    return (t.symbol, t.executed_at, t.amount, t.price, t.stop_loss, t.take_profit, t.exit_reason, t.exit_price,
            t.fees, t.profit_loss, t.closed_at)


async def test_the_replay_is_the_default_market_source(settings: Settings) -> None:
    assert Settings(_env_file=None).market_source == "replay"  # type: ignore[call-arg]
    container = Container(settings)
    assert isinstance(container.exchanges, PaperExchanges)
    assert isinstance(container.exchanges.market, SimulatedMarket)
    assert isinstance(container.symbols, CandleDirectory) and container.venue is None
    assert container.candles.has_symbol("BTCUSDT")
    await container.db.dispose()
