"""The backtest loop: one virtual user, `TradingBot.run_cycle` at every 5-minute close on a simulated clock."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from app.backtest.ahead import BLOCKS, start_analyses_ahead
from app.backtest.memory_store import MemoryStore
from app.domain.clock import SimulatedClock, ms_from_utc, utc_from_ms
from app.domain.events import EmergencyExit, EngineError
from app.domain.records import EventRecord, TradeRecord
from app.domain.risk import TradingConfig
from app.domain.symbols import Selection
from app.domain.values import ZERO, ExitReason
from app.engine.analysis import AnalysesAhead
from app.engine.bot import CycleSummary, TradingBot
from app.features.builder import MarketFeatureBuilder
from app.indicators.batch import warm_up as warm_up_indicators
from app.marketdata.candles import CandleStore
from app.venues.paper.exchange import MockBinanceService

USER_ID = 1
EQUITY_EVERY_CYCLES = 12  # mark the account to market once an hour (and at the start and the end)


class AccountProvider(Protocol):
    async def for_user(self, user_id: int) -> MockBinanceService: ...


@dataclass(slots=True)
class BacktestEngine:
    """What the composition root hands the runner: the live engine's parts on in-memory books."""

    bot: TradingBot
    store: MemoryStore
    exchanges: AccountProvider
    candles: CandleStore
    clock: SimulatedClock
    features: MarketFeatureBuilder
    workers: int | None = None  # processes analysing cycles ahead (app.backtest.ahead); None: one per CPU core
    ahead_blocks: tuple[int, int] = BLOCKS  # first and largest block of cycles a worker computes at once


@dataclass(frozen=True, slots=True)
class BacktestSpec:
    config: TradingConfig  # the virtual user's config; its symbols are the backtest's symbols
    start: datetime  # first decision time (already past the warm-up)
    end: datetime  # last decision time
    balance: Decimal
    interval_s: int = 300
    universe: tuple[str, ...] = ()  # every symbol a `top:N` rule may pick (empty: the config's own symbols)

    @property
    def symbols(self) -> tuple[str, ...]:
        """Every symbol the run may trade: the named ones, and with a `top:N` rule each it may pick."""
        return self.universe or Selection.of(self.config.symbols).named


@dataclass(slots=True)
class BacktestResult:
    spec: BacktestSpec
    cycles: int
    trades: list[TradeRecord]
    equity: list[tuple[datetime, Decimal]]
    final_balance: Decimal
    rejections: dict[str, int] = field(default_factory=dict)  # the bot's CycleSummary counts
    errors: list[tuple[datetime, str]] = field(default_factory=list)  # (time, message) of every error event
    decisions: dict[tuple[str, str], int] = field(default_factory=dict)  # (decision, reason) counts
    events: dict[str, int] = field(default_factory=dict)
    closed_at_end: tuple[int, ...] = ()  # trade ids the backtest closed when the span ended


OnCycle = Callable[[datetime, CycleSummary, int], None]


def cycle_times(start: datetime, end: datetime, interval_s: int) -> list[datetime]:
    """Every interval boundary in [start, end] (start rounded up to a boundary, as the live loop aligns)."""
    step = interval_s * 1000
    first = -(-ms_from_utc(start) // step) * step
    last = ms_from_utc(end)
    return [utc_from_ms(ms) for ms in range(first, last + 1, step)]


async def run_backtest(engine: BacktestEngine, spec: BacktestSpec, on_cycle: OnCycle | None = None,
                       analyses: AnalysesAhead | None = None) -> BacktestResult:
    """Open the account, run every cycle, close what is still open at the end, and collect the books.
    `analyses` (e.g. a study's cached ones) replaces the worker processes that would compute them ahead."""
    times = cycle_times(spec.start, spec.end, spec.interval_s)
    if not times:
        raise ValueError(f"no decision time between {spec.start.isoformat()} and {spec.end.isoformat()}")
    engine.clock.set(times[0])
    await open_account(engine, spec)
    rejections: dict[str, int] = {}
    equity = [(times[0], await account_equity(engine, spec, times[0]))]
    warm_up_indicators()  # the compiled loops load now, with the garbage collector paused, not in the first cycle
    ahead = None if analyses is not None else start_analyses_ahead(
        engine, dataclasses.replace(spec.config, symbols=spec.symbols), times)
    engine.bot.ahead = analyses or ahead
    try:
        for index, now in enumerate(times, start=1):
            engine.clock.set(now)
            summary = await engine.bot.run_cycle(now)
            for key, count in summary.rejections.items():
                rejections[key] = rejections.get(key, 0) + count
            if index % EQUITY_EVERY_CYCLES == 0:
                equity.append((now, await account_equity(engine, spec, now)))
            if on_cycle is not None:
                on_cycle(now, summary, len(engine.store.tables.trades))
    finally:
        engine.bot.ahead = None
        if ahead is not None:
            ahead.close()
    closed = await close_open_trades(engine)
    final = await account_equity(engine, spec, times[-1])
    if equity[-1][0] != times[-1]:
        equity.append((times[-1], final))
    else:
        equity[-1] = (times[-1], final)
    tables = engine.store.tables
    return BacktestResult(
        spec=spec, cycles=len(times), trades=engine.store.all_trades(), equity=equity, final_balance=final,
        rejections=rejections, decisions=dict(tables.decision_counts), events=dict(tables.event_counts),
        closed_at_end=closed, errors=run_errors(tables.events),
    )


def run_errors(events: Sequence[EventRecord]) -> list[tuple[datetime, str]]:
    """What went wrong during the run, oldest first: `error` events (an order the venue refused, a failed
    analysis...) and emergency exits (a position that could not be protected)."""
    found = []
    for event in events:
        if event.type == EngineError.type:
            found.append((event.time, str(event.data.get("message", ""))))
        elif event.type == EmergencyExit.type:
            found.append((event.time, f"emergency exit of {event.data.get('symbol')}: {event.data.get('reason')}"))
    return found


async def open_account(engine: BacktestEngine, spec: BacktestSpec) -> None:
    """The virtual user: an active config, a portfolio row and a funded simulated exchange account."""
    now = engine.clock.now()
    async with engine.store() as uow:
        await uow.configs.create(dataclasses.replace(spec.config, user_id=USER_ID, is_active=True), now)
        await uow.portfolios.create(USER_ID, spec.balance, now)
    exchange = await engine.exchanges.for_user(USER_ID)
    await exchange.fund("USDT", spec.balance)


async def close_open_trades(engine: BacktestEngine) -> tuple[int, ...]:
    """Positions still open when the span ends are sold through the bot's own close path (reason MANUAL)."""
    async with engine.store() as uow:
        positions = await uow.positions.for_user(USER_ID)
    for position in positions:
        await engine.bot.close_trade(USER_ID, position.trade_id, ExitReason.MANUAL)
    return tuple(p.trade_id for p in positions)


async def account_equity(engine: BacktestEngine, spec: BacktestSpec, now: datetime) -> Decimal:
    """USDT plus every base asset held (free or locked in an OCO) at the last closed 5m price."""
    exchange = await engine.exchanges.for_user(USER_ID)
    total = ZERO
    bases = {}
    for symbol in spec.symbols:
        rules = await exchange.get_symbol_rules(symbol)
        bases[rules.base_asset] = symbol
    for balance in await exchange.get_balances():
        if balance.asset == "USDT":
            total += balance.total
        elif balance.asset in bases:
            total += balance.total * engine.candles.price_at(bases[balance.asset], now)
    return total
