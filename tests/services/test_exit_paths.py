"""Exit paths against a scripted exchange at the port: a stop gapped through, a cancelled bracket, a failed OCO."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from app.config import Settings
from app.container import Container
from app.domain.clock import SimulatedClock
from app.domain.errors import OrderRejected, OrderStatusUnknown, RuleViolation, TemporaryExchangeError
from app.domain.records import PositionRecord, TradeRecord
from app.domain.values import (
    ExitReason,
    Fill,
    ListStatus,
    OcoOrder,
    Order,
    OrderStatus,
    OrderType,
    Side,
    TradeStatus,
)
from tests.bundled import bundled_rules

NOW = datetime(2025, 9, 10, 12, tzinfo=UTC)
D = Decimal


def _leg(kind: OrderType, status: OrderStatus, price: str, client_id: str) -> Order:
    return Order("BTCUSDT", 1, client_id, Side.SELL, kind, status, D("0.001"), price=D(price))


class ScriptedExchange:
    """Answers with a fixed OCO state and records what the bot asks for."""

    def __init__(self, oco: OcoOrder, sell_price: str = "64000") -> None:
        self.oco, self.sell_price = oco, D(sell_price)
        self.calls: list[str] = []
        self.oco_rejections = 0

    async def get_symbol_rules(self, symbol: str):  # type: ignore[no-untyped-def]
        return bundled_rules()[symbol]

    async def get_oco_order_status(self, symbol: str, list_id: str) -> OcoOrder:
        self.calls.append(f"status {list_id}")
        return self.oco

    async def cancel_order(self, symbol: str, client_id: str) -> Order:
        self.calls.append(f"cancel {client_id}")
        self.oco = replace(self.oco, legs=tuple(replace(leg, status=OrderStatus.CANCELED) for leg in self.oco.legs))
        return self.oco.stop_loss_leg

    async def cancel_oco_order(self, symbol: str, list_id: str) -> OcoOrder:
        self.calls.append(f"cancel-list {list_id}")
        return self.oco

    async def place_oco_order(self, *args: object) -> OcoOrder:
        self.calls.append("place-oco")
        raise OrderRejected("The relationship of the prices for the orders is not correct.", -2010)

    async def place_market_order(self, symbol: str, side: Side, quantity: Decimal, client_id: str) -> Order:
        self.calls.append(f"market {side.value} {quantity}")
        quote = quantity * self.sell_price
        fill = Fill(self.sell_price, quantity, quote * D("0.001"), "USDT")
        return Order(symbol, 9, client_id, side, OrderType.MARKET, OrderStatus.FILLED, quantity, quantity, quote,
                     fills=(fill,), transact_time=NOW)


class Provider:
    def __init__(self, exchange: ScriptedExchange) -> None:
        self.exchange = exchange

    async def for_user(self, user_id: int) -> ScriptedExchange:
        return self.exchange


async def _open_position(container: Container, oco_id: str | None) -> tuple[int, int]:
    async with container.uow() as uow:
        user = await uow.users.add("x", "x@example.com", "hash", NOW)
        await uow.configs.create(container.default_config(user.id), NOW)
        await uow.portfolios.create(user.id, D("10000"), NOW)
        trade = await uow.trades.add(TradeRecord(
            id=0, user_id=user.id, symbol="BTCUSDT", side="BUY", status=TradeStatus.FILLED, amount=D("0.001"),
            price=D("65000"), stop_loss=D("64350"), take_profit=D("66300"), ai_signal_confidence=70,
            entry_client_order_id="e1", entry_fee=D("0.065"), executed_at=NOW - timedelta(hours=1), fees=D("0.065"),
        ))
        await uow.positions.add(PositionRecord(trade.id, user.id, "BTCUSDT", D("0.001"), D("65000"), D("64350"),
                                               D("66300"), oco_id, NOW - timedelta(hours=1)))
        await uow.commit()
    return user.id, trade.id


def _bot_on(container: Container, exchange: ScriptedExchange) -> None:
    container.bot.exchanges = Provider(exchange)  # type: ignore[assignment]
    container.bot.clock = SimulatedClock(NOW)


async def test_a_stop_gapped_through_is_noticed_and_sold(settings: Settings) -> None:
    container = Container(settings)
    gapped = OcoOrder("BTCUSDT", 1, "e1-p1", ListStatus.ALL_DONE, (
        _leg(OrderType.LIMIT_MAKER, OrderStatus.EXPIRED, "66300", "e1-p1-tp"),
        _leg(OrderType.STOP_LOSS_LIMIT, OrderStatus.NEW, "64220", "e1-p1-sl"),
    ))
    exchange = ScriptedExchange(gapped, sell_price="63000")
    _bot_on(container, exchange)
    user_id, trade_id = await _open_position(container, "e1-p1")
    assert await container.bot.exits.check_open_positions(NOW) == 1
    assert "cancel e1-p1-sl" in exchange.calls and "market SELL 0.001" in exchange.calls
    async with container.uow() as uow:
        trade = await uow.trades.get(user_id, trade_id)
        assert await uow.positions.get(trade_id) is None
    assert trade is not None and trade.exit_reason is not None and trade.exit_reason.value == "STOP_LOSS"
    assert trade.exit_price == D("63000")
    assert trade.profit_loss == D("63") - D("0.063") - D("65")
    await container.db.dispose()


async def test_a_filled_take_profit_is_booked_without_selling(settings: Settings) -> None:
    container = Container(settings)
    tp = replace(_leg(OrderType.LIMIT_MAKER, OrderStatus.FILLED, "66300", "e1-p1-tp"), executed_qty=D("0.001"),
                 cumulative_quote_qty=D("66.3"), fills=(Fill(D("66300"), D("0.001"), D("0.0663"), "USDT"),),
                 transact_time=NOW - timedelta(minutes=20))
    done = OcoOrder("BTCUSDT", 1, "e1-p1", ListStatus.ALL_DONE, (
        tp, _leg(OrderType.STOP_LOSS_LIMIT, OrderStatus.EXPIRED, "64220", "e1-p1-sl")))
    exchange = ScriptedExchange(done)
    _bot_on(container, exchange)
    user_id, trade_id = await _open_position(container, "e1-p1")
    await container.bot.exits.check_open_positions(NOW)
    assert not any(call.startswith("market") for call in exchange.calls)
    async with container.uow() as uow:
        trade = await uow.trades.get(user_id, trade_id)
    assert trade is not None and trade.exit_reason is not None and trade.exit_reason.value == "TAKE_PROFIT"
    assert trade.closed_at == NOW - timedelta(minutes=20)
    assert trade.profit_loss == D("66.3") - D("0.0663") - D("65") and trade.fees == D("0.065") + D("0.0663")
    await container.db.dispose()


async def test_protection_that_cannot_be_placed_ends_in_an_emergency_exit(settings: Settings) -> None:
    container = Container(settings)
    exchange = ScriptedExchange(OcoOrder("BTCUSDT", 1, "none", ListStatus.ALL_DONE, ()))
    _bot_on(container, exchange)
    user_id, trade_id = await _open_position(container, None)
    async with container.uow() as uow:
        trade = await uow.trades.get(user_id, trade_id)
    assert trade is not None
    assert await container.bot.exits.secure(exchange, trade, NOW) is False  # type: ignore[arg-type]
    assert exchange.calls.count("place-oco") == settings.oco_place_retries
    async with container.uow() as uow:
        closed = await uow.trades.get(user_id, trade_id)
        events = [e.type for e in await uow.events.for_user(user_id)]
    assert closed is not None and closed.exit_reason is not None and closed.exit_reason.value == "EMERGENCY"
    assert "emergency_exit" in events
    await container.db.dispose()


class LostExitAnswer(ScriptedExchange):
    """The exit sells, but its answer is lost and the first lookup fails too; the second lookup finds it."""

    def __init__(self, oco: OcoOrder) -> None:
        super().__init__(oco)
        self.sold: Order | None = None
        self.lookups = 0

    async def place_market_order(self, symbol: str, side: Side, quantity: Decimal, client_id: str) -> Order:
        self.sold = await super().place_market_order(symbol, side, quantity, client_id)
        raise OrderStatusUnknown("timeout after sending")

    async def get_order(self, symbol: str, client_id: str) -> Order:
        self.lookups += 1
        if self.lookups == 1 or self.sold is None:
            raise TemporaryExchangeError("exchange busy")
        return self.sold


async def test_an_exit_whose_answer_was_lost_is_found_not_sent_twice(settings: Settings) -> None:
    container = Container(settings)
    cancelled = OcoOrder("BTCUSDT", 1, "e1-p1", ListStatus.ALL_DONE, (
        _leg(OrderType.LIMIT_MAKER, OrderStatus.CANCELED, "66300", "e1-p1-tp"),
        _leg(OrderType.STOP_LOSS_LIMIT, OrderStatus.CANCELED, "64220", "e1-p1-sl"),
    ))
    exchange = LostExitAnswer(cancelled)
    _bot_on(container, exchange)
    user_id, trade_id = await _open_position(container, "e1-p1")
    with pytest.raises(RuleViolation):
        await container.bot.close_trade(user_id, trade_id, ExitReason.MANUAL)
    closed = await container.bot.close_trade(user_id, trade_id, ExitReason.MANUAL)
    assert sum(call.startswith("market SELL") for call in exchange.calls) == 1
    assert closed.exit_reason == ExitReason.MANUAL and closed.exit_price == D("64000")
    await container.db.dispose()
