"""Composition root: builds every service from the settings and picks the concrete adapters."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from app.config import Settings
from app.db import Database
from app.domain.clock import Clock, WallClock
from app.domain.errors import RuleViolation
from app.domain.records import EventRecord, TradeRecord, UserAccount
from app.domain.risk import TradingConfig
from app.domain.values import Balance, ExitReason, TradingState
from app.repositories import UnitOfWork, UnitOfWorkFactory
from app.services.metrics import Metrics
from app.services.security import CredentialCipher, PasswordHasher, TokenService
from app.services.websocket_manager import WebSocketManager


class Container:
    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
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
        self._next_cycle_at: datetime | None = None

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

    def tradable_symbols(self) -> tuple[str, ...]:
        return tuple(self.settings.default_symbols)

    def next_cycle_at(self) -> datetime | None:
        return self._next_cycle_at

    async def open_paper_account(self, uow: UnitOfWork, user_id: int) -> None:
        """Funds the user's simulated exchange account (engine issue)."""

    async def balances(self, user: UserAccount) -> list[Balance]:
        return []

    async def current_prices(self, user: UserAccount, symbols: Iterable[str]) -> dict[str, Decimal]:
        return {}

    async def close_trade(self, user: UserAccount, trade_id: int, reason: ExitReason) -> TradeRecord:
        raise RuleViolation("the trading engine is not running")

    async def start(self) -> None:
        await self.db.migrate()

    async def stop(self) -> None:
        await self.db.dispose()

    async def exchange_health(self) -> str:
        return "ok"

    def mount_dashboard(self, app: object) -> None:
        """Serves the web dashboard at / (dashboard issue)."""
