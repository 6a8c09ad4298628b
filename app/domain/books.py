"""The engine's books as a port: the repositories a trading cycle reads and writes, and its unit of work.

The SQL books (app/repositories/) and the backtest's in-memory books (app/backtest/memory_store.py) both implement
it; mypy checks every call the engine makes against these signatures and both implementations against them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from app.domain.records import (
    AnalysisRecord,
    DecisionRecord,
    DecisionSpan,
    DecisionTally,
    EventRecord,
    OrderRecord,
    PositionRecord,
    Remainder,
    RowStatus,
    TradeRecord,
)
from app.domain.risk import TradingConfig
from app.domain.values import ExitReason, Order


class ConfigBook(Protocol):
    async def active(self) -> list[TradingConfig]: ...

    async def get(self, user_id: int) -> TradingConfig: ...

    async def create(self, config: TradingConfig, now: datetime) -> None: ...

    async def analyzed_at(self, user_ids: Sequence[int]) -> dict[int, datetime]:
        """When each of the users was last decided (users never decided are left out)."""
        ...

    async def mark_analyzed(self, user_ids: Sequence[int], when: datetime) -> set[int]:
        """Mark the users decided at `when`, each only if it was not decided at `when` or later already (another
        process decided it in this cycle): the users marked now."""
        ...

    async def position_timeouts(self, user_ids: Sequence[int]) -> dict[int, int]:
        """Each user's position timeout in minutes."""
        ...


class TradeBook(Protocol):
    async def add(self, trade: TradeRecord) -> TradeRecord: ...

    async def add_many(self, trades: Sequence[TradeRecord]) -> list[TradeRecord]:
        """Each trade with its id, in order (entry client ids are unique)."""
        ...

    async def get(self, user_id: int, trade_id: int) -> TradeRecord | None: ...

    async def by_entry(self, entry_client_order_id: str) -> TradeRecord | None: ...

    async def close(self, trade_id: int, exit_price: Decimal, exit_reason: ExitReason, exit_fee: Decimal,
                    profit_loss: Decimal, profit_loss_percentage: Decimal, closed_at: datetime) -> TradeRecord: ...

    async def entries_since(self, user_id: int, since: datetime) -> int: ...

    async def recent_results(self, user_id: int, count: int) -> tuple[bool, ...]: ...

    async def entry_counts_since(self, user_ids: Sequence[int], since: datetime) -> dict[int, int]:
        """entries_since for many users at once (users without entries are left out)."""
        ...

    async def recent_results_of(self, user_ids: Sequence[int], count: int) -> dict[int, tuple[bool, ...]]:
        """recent_results for many users at once (users without closed trades are left out)."""
        ...

    async def closed(self, user_id: int) -> list[TradeRecord]: ...


class OrderBook(Protocol):
    """Every order the bot sent (or adopted), written with its client id before it goes out."""

    async def add(self, order: OrderRecord, now: datetime) -> None: ...

    async def add_many(self, orders: Sequence[OrderRecord], now: datetime) -> None:
        """Many rows at once (a batch of users' entries, their first lists)."""
        ...

    async def get(self, client_order_id: str) -> OrderRecord | None: ...

    async def record_exchange_state(self, client_order_id: str, order: Order, now: datetime,
                                    trade_id: int | None = None) -> None:
        """The row takes the exchange's state of the order (its status too), and the trade it belongs to if given."""
        ...

    async def record_exchange_states(self, states: Sequence[tuple[str, Order, int | None]], now: datetime) -> None:
        """record_exchange_state for many rows at once: (client order id, order, trade id) each."""
        ...

    async def mark(self, client_order_id: str, status: RowStatus, now: datetime, error: str | None = None,
                   trade_id: int | None = None) -> None: ...

    async def mark_many(self, marks: Sequence[tuple[str, RowStatus]], now: datetime) -> None:
        """mark (status only) for many rows at once: (client order id, status) each."""
        ...

    async def unbooked_entries(self) -> list[OrderRecord]: ...

    async def for_trade(self, trade_id: int, purpose: str) -> list[OrderRecord]: ...


class PositionBook(Protocol):
    async def add(self, position: PositionRecord) -> None: ...

    async def add_many(self, positions: Sequence[PositionRecord]) -> None: ...

    async def for_user(self, user_id: int) -> list[PositionRecord]: ...

    async def for_users(self, user_ids: Sequence[int]) -> dict[int, list[PositionRecord]]:
        """for_user for many users at once (users without positions are left out)."""
        ...

    async def all(self) -> list[PositionRecord]: ...

    async def get(self, trade_id: int) -> PositionRecord | None: ...

    async def set_protection(self, trade_id: int, oco_order_id: str | None, stop: Decimal, target: Decimal) -> None: ...

    async def set_protections(self, links: Sequence[tuple[int, str, Decimal, Decimal]]) -> None:
        """set_protection for many positions at once: (trade id, list id, stop, target) each."""
        ...

    async def mark_closing(self, trade_id: int, reason: ExitReason) -> None: ...

    async def remove(self, trade_id: int) -> bool: ...


class PortfolioBook(Protocol):
    async def create(self, user_id: int, start_balance: Decimal, now: datetime) -> None: ...

    async def record_close(self, user_id: int, profit_loss: Decimal, fees: Decimal, now: datetime) -> None: ...


class DustBook(Protocol):
    """The carried remainder of each user and symbol (see Remainder)."""

    async def get(self, user_id: int, symbol: str) -> Remainder: ...

    async def set(self, user_id: int, symbol: str, remainder: Remainder) -> None: ...

    async def get_many(self, keys: Sequence[tuple[int, str]]) -> dict[tuple[int, str], Remainder]:
        """get for many (user id, symbol) at once: every key answered (nothing carried: an empty Remainder)."""
        ...

    async def set_many(self, remainders: Mapping[tuple[int, str], Remainder]) -> None: ...


class AnalysisBook(Protocol):
    """The decision log: analyses, the users' own decisions on actionable ones, the cycle's tallies, and the spans
    in which users saw the holds."""

    async def add(self, record: AnalysisRecord) -> int: ...

    async def add_decisions(self, decisions: Sequence[DecisionRecord]) -> None: ...

    async def add_tallies(self, tallies: Sequence[DecisionTally]) -> None: ...

    async def open_spans(self, user_ids: Sequence[int]) -> dict[int, DecisionSpan]:
        """Each user's open span (the one their decisions go on in), if any."""
        ...

    async def close_spans(self, ends: Sequence[tuple[int, datetime]]) -> None:
        """(span id, its last cycle) each."""
        ...

    async def add_spans(self, spans: Sequence[DecisionSpan]) -> None: ...

    async def latest_time(self) -> datetime | None: ...


class EventBook(Protocol):
    async def add(self, event: EventRecord) -> EventRecord: ...

    async def add_many(self, events: Sequence[EventRecord]) -> list[EventRecord]: ...


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
