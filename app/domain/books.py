"""The engine's books as a port: the repositories a trading cycle reads and writes, and its unit of work.

The SQL books (app/repositories/) and the backtest's in-memory books (app/backtest/memory_store.py) both implement
it; mypy checks every call the engine makes against these signatures and both implementations against them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from app.domain.records import (
    AnalysisRecord,
    EventRecord,
    OrderRecord,
    PositionRecord,
    Remainder,
    RowStatus,
    TradeRecord,
)
from app.domain.risk import TradingConfig
from app.domain.values import Decision, ExitReason, Order, Reason


class ConfigBook(Protocol):
    async def active(self) -> list[TradingConfig]: ...

    async def get(self, user_id: int) -> TradingConfig: ...

    async def create(self, config: TradingConfig, now: datetime) -> None: ...

    async def last_analyzed_at(self, user_id: int) -> datetime | None: ...

    async def mark_analyzed(self, user_id: int, when: datetime) -> None: ...


class TradeBook(Protocol):
    async def add(self, trade: TradeRecord) -> TradeRecord: ...

    async def get(self, user_id: int, trade_id: int) -> TradeRecord | None: ...

    async def by_entry(self, entry_client_order_id: str) -> TradeRecord | None: ...

    async def close(self, trade_id: int, exit_price: Decimal, exit_reason: ExitReason, exit_fee: Decimal,
                    profit_loss: Decimal, profit_loss_percentage: Decimal, closed_at: datetime) -> TradeRecord: ...

    async def entries_since(self, user_id: int, since: datetime) -> int: ...

    async def recent_results(self, user_id: int, count: int) -> tuple[bool, ...]: ...

    async def closed(self, user_id: int) -> list[TradeRecord]: ...


class OrderBook(Protocol):
    """Every order the bot sent (or adopted), written with its client id before it goes out."""

    async def add(self, order: OrderRecord, now: datetime) -> None: ...

    async def get(self, client_order_id: str) -> OrderRecord | None: ...

    async def record_exchange_state(self, client_order_id: str, order: Order, now: datetime) -> None: ...

    async def mark(self, client_order_id: str, status: RowStatus, now: datetime, error: str | None = None,
                   trade_id: int | None = None) -> None: ...

    async def unbooked_entries(self) -> list[OrderRecord]: ...

    async def for_trade(self, trade_id: int, purpose: str) -> list[OrderRecord]: ...


class PositionBook(Protocol):
    async def add(self, position: PositionRecord) -> None: ...

    async def for_user(self, user_id: int) -> list[PositionRecord]: ...

    async def all(self) -> list[PositionRecord]: ...

    async def get(self, trade_id: int) -> PositionRecord | None: ...

    async def set_protection(self, trade_id: int, oco_order_id: str | None, stop: Decimal, target: Decimal) -> None: ...

    async def mark_closing(self, trade_id: int, reason: ExitReason) -> None: ...

    async def remove(self, trade_id: int) -> bool: ...


class PortfolioBook(Protocol):
    async def create(self, user_id: int, start_balance: Decimal, now: datetime) -> None: ...

    async def record_close(self, user_id: int, profit_loss: Decimal, fees: Decimal, now: datetime) -> None: ...


class DustBook(Protocol):
    """The carried remainder of each user and symbol (see Remainder)."""

    async def get(self, user_id: int, symbol: str) -> Remainder: ...

    async def set(self, user_id: int, symbol: str, remainder: Remainder) -> None: ...


class AnalysisBook(Protocol):
    async def add(self, record: AnalysisRecord) -> int: ...

    async def add_decision(self, analysis_id: int, user_id: int, decision: Decision, reasons: Sequence[Reason],
                           now: datetime, trade_id: int | None = None) -> None: ...

    async def latest_time(self) -> datetime | None: ...


class EventBook(Protocol):
    async def add(self, event: EventRecord) -> EventRecord: ...


class EngineBooks(Protocol):
    """One unit of work: what it wrote is kept only when `commit` is called."""

    @property
    def configs(self) -> ConfigBook: ...

    @property
    def trades(self) -> TradeBook: ...

    @property
    def orders(self) -> OrderBook: ...

    @property
    def positions(self) -> PositionBook: ...

    @property
    def portfolios(self) -> PortfolioBook: ...

    @property
    def dust(self) -> DustBook: ...

    @property
    def analyses(self) -> AnalysisBook: ...

    @property
    def events(self) -> EventBook: ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...


# `async with books() as uow:` opens one unit of work
Books = Callable[[], AbstractAsyncContextManager[EngineBooks]]
