"""Composition root: builds every service from the settings and picks the concrete adapters."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from app.backtest.memory_store import MemoryStore
from app.backtest.runner import BacktestEngine
from app.config import Settings
from app.db import Database
from app.domain.clock import Clock, SimulatedClock, WallClock
from app.domain.errors import TradingError
from app.domain.ports import ExchangeAdapter, SignalProvider
from app.domain.records import EventRecord, TradeRecord, UserAccount
from app.domain.risk import TradingConfig
from app.domain.values import Balance, ExitReason, TradingState
from app.repositories import UnitOfWork, UnitOfWorkFactory
from app.services.market_data import CandleStore
from app.services.market_features import MarketFeatureBuilder
from app.services.market_regime_analyzer import MarketRegimeAnalyzer
from app.services.metrics import Metrics
from app.services.mock_binance_service import (
    InMemorySimAccountStore,
    MockBinanceService,
    SimAccountState,
    SimulatedMarket,
)
from app.services.risk_manager import RiskManager
from app.services.rule_based_analyzer import RuleBasedAnalyzer
from app.services.security import CredentialCipher, PasswordHasher, TokenService
from app.services.trading_bot import (
    BotSettings,
    ExchangeProvider,
    Publish,
    TradingBot,
    TradingLoop,
    UowFactory,
)
from app.services.websocket_manager import WebSocketManager


class Container:
    def __init__(self, settings: Settings, clock: Clock | None = None, market_clock: Clock | None = None,
                 run_engine: bool = False) -> None:
        self.settings = settings
        self.clock: Clock = clock or WallClock()
        self.db = Database(settings.database_url)
        self.uow = UnitOfWorkFactory(self.db.sessions)
        self.hasher = PasswordHasher(settings.argon2_time_cost, settings.argon2_memory_cost)
        self.tokens = TokenService(settings.jwt_secret.get_secret_value(), settings.jwt_expire_minutes)
        key = settings.credentials_key.get_secret_value() if settings.credentials_key else None
        self.cipher = CredentialCipher(key)
        self.metrics = Metrics()
        self.websockets = WebSocketManager(self._store_event)
        self.engine_state = TradingState.ACTIVE
        self.candles = CandleStore.load(settings.data_dir, symbols=settings.default_symbols)
        self.market_clock: Clock = market_clock or self.clock
        self.market = SimulatedMarket(self.candles, slippage_pct=settings.sim_slippage_pct, fee_rate=settings.sim_fee_rate)
        self.exchanges = PaperExchanges(self.market, DatabaseSimAccountStore(self.uow, self.market_clock), self.market_clock)
        self.market_data = MockBinanceService("market-data", self.market, InMemorySimAccountStore(), self.market_clock)
        self.bot = build_trading_bot(self)
        self.loop: TradingLoop | None = None
        self.run_engine = run_engine

    async def _store_event(self, event: EventRecord) -> EventRecord:
        async with self.uow() as uow:
            stored = await uow.events.add(event)
            await uow.commit()
            return stored

    def default_config(self, user_id: int) -> TradingConfig:
        s = self.settings
        return TradingConfig(
            user_id=user_id, is_active=False, symbols=tuple(s.default_symbols), risk_per_trade_pct=s.risk_per_trade_pct,
            max_open_positions=s.max_open_positions, daily_trade_limit=s.daily_trade_limit,
            min_signal_confidence=s.min_signal_confidence, max_balance_trade_ratio=s.max_balance_trade_ratio,
            trading_hours_start=s.trading_hours_start, trading_hours_end=s.trading_hours_end,
            position_timeout_minutes=s.position_timeout_minutes, analyzer=s.default_analyzer,
        )

    def rebind_market_clock(self, clock: Clock) -> None:
        """Puts every market-time component on a new clock (the demo learns its start time only at start-up)."""
        self.market_clock = clock
        self.exchanges = PaperExchanges(self.market, DatabaseSimAccountStore(self.uow, clock), clock)
        self.market_data = MockBinanceService("market-data", self.market, InMemorySimAccountStore(), clock)
        self.bot = build_trading_bot(self)

    def tradable_symbols(self) -> tuple[str, ...]:
        available = set(self.candles.symbols())
        return tuple(s for s in self.settings.default_symbols if s in available)

    def next_cycle_at(self) -> datetime | None:
        return self.loop.next_cycle_at if self.loop is not None else None

    async def open_paper_account(self, uow: UnitOfWork, user_id: int) -> None:
        """Funds the user's simulated exchange account in the registration's own transaction."""
        state = SimAccountState()
        state.move("USDT", free_delta=self.settings.paper_start_balance)
        await uow.sim_accounts.save(paper_account_id(user_id), state.to_dict(), self.clock.now())

    async def balances(self, user: UserAccount) -> list[Balance]:
        exchange = await self.exchanges.for_user(user.id)
        return await exchange.get_balances()

    async def current_prices(self, user: UserAccount, symbols: Iterable[str]) -> dict[str, Decimal]:
        prices = {}
        for symbol in symbols:
            if symbol in self.candles.symbols():
                prices[symbol] = await self.market_data.get_symbol_price(symbol)
        return prices

    async def close_trade(self, user: UserAccount, trade_id: int, reason: ExitReason) -> TradeRecord:
        return await self.bot.close_trade(user.id, trade_id, reason)

    async def exchange_health(self) -> str:
        try:
            await self.market_data.get_symbol_price(self.tradable_symbols()[0])
        except (TradingError, IndexError):
            return "degraded"
        return "ok"

    def mount_dashboard(self, app: FastAPI) -> None:
        """Serves the web dashboard at / when it is built (app/web)."""
        if WEB_DIR.is_dir() and (WEB_DIR / "index.html").exists():
            app.mount("/", StaticFiles(directory=WEB_DIR, html=True), name="dashboard")

    async def start(self, migrate: bool = True) -> None:
        if migrate:
            await self.db.migrate()
        if self.run_engine:
            self.loop = TradingLoop(
                self.bot, self.market_clock, self.settings.trading_interval_seconds,
                observe=self.metrics.cycle_duration.observe,
            )
            self.loop.start()

    async def stop(self) -> None:
        if self.loop is not None:
            await self.loop.stop()
        await self.db.dispose()


WEB_DIR = Path(__file__).parent / "web"


def paper_account_id(user_id: int) -> str:
    return f"paper-{user_id}"


class DatabaseSimAccountStore:
    """Keeps simulated exchange accounts in the sim_accounts table, so paper accounts survive restarts."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self.uow, self.clock = uow, clock

    async def load(self, account_id: str) -> SimAccountState | None:
        async with self.uow() as uow:
            data = await uow.sim_accounts.load(account_id)
        return SimAccountState.from_dict(data) if data is not None else None

    async def save(self, account_id: str, state: SimAccountState) -> None:
        async with self.uow() as uow:
            await uow.sim_accounts.save(account_id, state.to_dict(), self.clock.now())
            await uow.commit()


class PaperExchanges:
    """One simulated exchange account per user, built once and kept (its lock serialises that user's orders)."""

    def __init__(self, market: SimulatedMarket, store: DatabaseSimAccountStore | InMemorySimAccountStore,
                 clock: Clock) -> None:
        self.market, self.store, self.clock = market, store, clock
        self._services: dict[int, MockBinanceService] = {}

    async def for_user(self, user_id: int) -> MockBinanceService:
        service = self._services.get(user_id)
        if service is None:
            service = MockBinanceService(paper_account_id(user_id), self.market, self.store, self.clock)
            self._services[user_id] = service
        return service


def build_trading_bot(container: Container) -> TradingBot:
    return assemble_trading_bot(
        container.settings, container.uow, container.exchanges, container.market_data,
        container.websockets.publish, container.market_clock,
    )


def assemble_trading_bot(settings: Settings, uow: UowFactory, exchanges: ExchangeProvider, market: ExchangeAdapter,
                         publish: Publish, clock: Clock) -> TradingBot:
    """The engine's parts, the same for the live service and the backtester (only the books and clock differ)."""
    limits = settings.risk_limits()
    risk_manager = RiskManager(limits)
    features = MarketFeatureBuilder(MarketRegimeAnalyzer(), risk_manager)
    analysts: dict[str, SignalProvider] = {"rules": RuleBasedAnalyzer()}
    return TradingBot(
        uow=uow, exchanges=exchanges, market=market, analysts=analysts,
        build_features=features.build, risk_manager=risk_manager, publish=publish,
        clock=clock, limits=limits,
        settings=BotSettings(
            user_rate_limit_s=settings.user_rate_limit_seconds,
            oco_place_retries=settings.oco_place_retries,
        ),
    )


def build_backtest_engine(settings: Settings, candles: CandleStore, clock: SimulatedClock) -> BacktestEngine:
    """The live composition with in-memory books and accounts: TradingBot, simulated exchange, same parts."""
    market = SimulatedMarket(candles, slippage_pct=settings.sim_slippage_pct, fee_rate=settings.sim_fee_rate)
    store = MemoryStore()
    exchanges = PaperExchanges(market, InMemorySimAccountStore(), clock)
    market_data = MockBinanceService("market-data", market, InMemorySimAccountStore(), clock)
    bot = assemble_trading_bot(settings, store, exchanges, market_data, store.publish, clock)
    return BacktestEngine(bot=bot, store=store, exchanges=exchanges, candles=candles, clock=clock)
