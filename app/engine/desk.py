"""What every part of the engine shares: its collaborators (one mutable set, so that a test or a rebinding
reaches every part) and the order journal's small steps."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from app.domain.books import Books
from app.domain.clock import Clock
from app.domain.errors import OrderNotFound, OrderStatusUnknown, RateLimited, TemporaryExchangeError
from app.domain.events import Event, OrderPathRepaired
from app.domain.ports import ExchangeAdapter
from app.domain.records import EventRecord, OrderRecord, PositionRecord, RowStatus, TradeRecord
from app.domain.risk import RiskLimits
from app.domain.values import Order
from app.engine.metrics import Metrics
from app.engine.settings import BotSettings, log

Publish = Callable[[int, str, datetime, dict[str, Any]], Awaitable[Any]]
PublishMany = Callable[[Sequence[EventRecord]], Awaitable[Any]]  # many events stored together, then sent


class ExchangeProvider(Protocol):
    async def for_user(self, user_id: int) -> ExchangeAdapter: ...


@runtime_checkable
class CycleScoped(Protocol):
    """An exchange provider whose accounts a cycle reads many times (paper accounts kept in the database): inside
    `cycle()` each account is read at most once, then served from memory; every change is still saved at once."""

    def cycle(self) -> AbstractAsyncContextManager[object]: ...


@dataclass(slots=True)
class EngineParts:
    """The engine's collaborators, shared by its parts."""

    books: Books
    exchanges: ExchangeProvider
    publish: Publish
    clock: Clock
    limits: RiskLimits
    settings: BotSettings
    metrics: Metrics
    publish_many: PublishMany | None = None
    # the events a task holds back to publish together (Desk.events_held): only the task that holds them adds to
    # them, so a manual close running beside a batch publishes its own at once
    held_events: dict[asyncio.Task[Any], list[EventRecord]] = field(default_factory=dict)


class Desk:
    """One part of the engine: its collaborators and the order journal's steps (rows are written before an order
    goes out, and take the exchange's state after)."""

    def __init__(self, parts: EngineParts) -> None:
        self.parts = parts

    @property
    def uow(self) -> Books:
        return self.parts.books

    @property
    def exchanges(self) -> ExchangeProvider:
        return self.parts.exchanges

    @property
    def clock(self) -> Clock:
        return self.parts.clock

    @property
    def publish(self) -> Publish:
        return self.parts.publish

    @property
    def settings(self) -> BotSettings:
        return self.parts.settings

    @property
    def metrics(self) -> Metrics:
        return self.parts.metrics

    async def write_order(self, record: OrderRecord, now: datetime) -> None:
        async with self.uow() as uow:
            await uow.orders.add(record, now)
            await uow.commit()

    async def mark_order(self, client_id: str, status: RowStatus, now: datetime, error: str | None = None,
                          trade_id: int | None = None, order: Order | None = None) -> None:
        async with self.uow() as uow:
            if order is not None:
                await uow.orders.record_exchange_state(client_id, order, now)
            await uow.orders.mark(client_id, RowStatus.of(order.status) if order else status, now, error, trade_id)
            await uow.commit()

    async def find_order(self, exchange: ExchangeAdapter, symbol: str, client_id: str) -> Order | None:
        try:
            return await exchange.get_order(symbol, client_id)
        except (OrderNotFound, TemporaryExchangeError, OrderStatusUnknown):
            return None

    async def open_position(self, trade_id: int) -> PositionRecord | None:
        async with self.uow() as uow:
            position: PositionRecord | None = await uow.positions.get(trade_id)
        return position

    async def trade_of(self, position: PositionRecord) -> TradeRecord | None:
        async with self.uow() as uow:
            trade: TradeRecord | None = await uow.trades.get(position.user_id, position.trade_id)
        return trade

    async def report_repair(self, position: PositionRecord, action: str, now: datetime, detail: str) -> None:
        """What reconciliation repaired, in the log and on the user's event stream."""
        log.warning("user %s trade %s %s: %s (%s)", position.user_id, position.trade_id, position.symbol, action,
                    detail)
        await self.emit(position.user_id, OrderPathRepaired(position.trade_id, position.symbol, action, detail), now)

    async def emit(self, user_id: int, event: Event, now: datetime) -> None:
        """Tell the user (WebSocket and events table), serialised once; held back while the task holds events."""
        holding, task = self.parts.held_events, asyncio.current_task()
        held = holding.get(task) if holding and task is not None else None
        if held is not None:
            held.append(EventRecord(user_id, event.type, now, event.data()))
            return
        await self.publish(user_id, event.type, now, event.data())

    @contextlib.asynccontextmanager
    async def events_held(self) -> AsyncIterator[None]:
        """The events this task emits inside are published together when it ends (one transaction for a batch of
        users' rejections, instead of one each), in the order they were emitted."""
        task = asyncio.current_task()
        assert task is not None
        outer = self.parts.held_events.get(task)
        if outer is not None:  # held already: the outer hold publishes them
            yield
            return
        held: list[EventRecord] = []
        self.parts.held_events[task] = held
        try:
            yield
        finally:
            del self.parts.held_events[task]
            await self._publish_all(held)

    async def _publish_all(self, events: Sequence[EventRecord]) -> None:
        if not events:
            return
        if self.parts.publish_many is not None:
            await self.parts.publish_many(events)
            return
        for event in events:
            await self.publish(event.user_id, event.type, event.time, event.data)

    async def wait_out(self, limit: RateLimited, waited_s: float) -> bool:
        """Sleep through a rate limit if the order's waiting budget allows; False when it does not."""
        if waited_s + limit.retry_after_s > self.settings.max_order_wait_s:
            return False
        log.warning("rate limited: waiting %.0f s before the next order", limit.retry_after_s)
        await self.clock.sleep(limit.retry_after_s)
        return True
