"""Protection: the exchange-side OCO (take profit + stop loss) that every position carries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from app.domain.errors import ExchangeError, OrderStatusUnknown, RateLimited
from app.domain.events import TradeExecuted
from app.domain.ports import ExchangeAdapter
from app.domain.records import OrderRecord, PositionRecord, Purpose, RowStatus, TradeRecord
from app.domain.values import OcoOrder, OrderType, Side, SymbolRules
from app.engine.bookkeeping import stop_limit_price
from app.engine.desk import Desk


def list_row(position: PositionRecord, list_id: str) -> OrderRecord:
    """The order row of a list protecting `position`, written before the list is sent."""
    return OrderRecord(
        client_order_id=list_id, user_id=position.user_id, purpose=Purpose.PROTECT, symbol=position.symbol,
        side=Side.SELL, type=OrderType.OCO, quantity=position.amount, status=RowStatus.PENDING_SEND,
        price=position.take_profit, stop_price=position.stop_loss, trade_id=position.trade_id,
    )


def first_list_id(trade_entry_client_order_id: str) -> str:
    return f"{trade_entry_client_order_id}-p1"


@dataclass(frozen=True, slots=True)
class FirstList:
    """A new position and the row of its first list, written in the transaction that booked the position (the row
    exists before the list is sent, as every order's does, without a transaction of its own)."""

    position: PositionRecord
    row: OrderRecord


class Protection(Desk):
    """Places a position's OCO with retries, waiting out rate limits, and links it to the position."""

    async def protect(self, exchange: ExchangeAdapter, trade: TradeRecord, now: datetime, failures: int = 0,
                      last_error: str = "") -> str | None:
        """Place the OCO (with retries, waiting out a rate limit). None once the position is protected (or no longer
        needs it: gone, or being closed); else why it could not be placed. `failures`: attempts that already
        failed in this cycle (a new position's first list), counted against OCO_PLACE_RETRIES."""
        async with self.uow() as uow:
            position = await uow.positions.get(trade.id)
            attempt = len(await uow.orders.for_trade(trade.id, Purpose.PROTECT))
        if position is None or position.closing_reason is not None:
            return None
        rules = await exchange.get_symbol_rules(trade.symbol)
        waited_s = 0.0
        while failures < self.settings.oco_place_retries:
            attempt += 1
            try:
                oco = await self._send_oco(exchange, position, f"{trade.entry_client_order_id}-p{attempt}", rules, now)
            except RateLimited as e:  # nothing was sent: wait it out when the budget allows, then try again
                last_error = str(e)
                if not await self.wait_out(e, waited_s):
                    break
                waited_s += e.retry_after_s
                continue
            if isinstance(oco, OcoOrder):
                await self.link_all([(trade, position, oco)], now)
                return None
            failures, last_error = failures + 1, oco
        return last_error or "not placed"

    async def place_first(self, exchange: ExchangeAdapter, first: FirstList, now: datetime) -> OcoOrder | str:
        """A new position's first list, whose row was written with the position: the list, or why it failed. A
        rate limit (nothing sent) is raised."""
        rules = await exchange.get_symbol_rules(first.position.symbol)
        return await self._send_oco(exchange, first.position, first.row.client_order_id, rules, now, written=True)

    async def _send_oco(self, exchange: ExchangeAdapter, position: PositionRecord, list_id: str, rules: SymbolRules,
                        now: datetime, written: bool = False) -> OcoOrder | str:
        """The OCO, or why it failed (its row written first, unless `written` already). A rate limit (nothing
        sent) is raised for the caller to wait out."""
        limit = stop_limit_price(position.stop_loss, self.parts.limits.stop_limit_gap_pct, rules)
        if not written:
            await self.write_order(list_row(position, list_id), now)
        try:
            oco = await exchange.place_oco_order(
                position.symbol, position.amount, position.take_profit, position.stop_loss, limit, list_id
            )
        except OrderStatusUnknown:
            try:
                oco = await exchange.get_oco_order_status(position.symbol, list_id)
            except ExchangeError as e:
                await self.mark_order(list_id, RowStatus.UNKNOWN, now, str(e))
                return str(e)
        except RateLimited as e:
            await self.mark_order(list_id, RowStatus.REJECTED, now, str(e))
            raise
        except ExchangeError as e:
            await self.mark_order(list_id, RowStatus.REJECTED, now, str(e))
            return str(e)
        self.metrics.orders_placed.labels(type="oco", outcome=oco.list_status.value).inc()
        return oco  # its row takes the list's status when it is linked

    async def link_all(self, placed: Sequence[tuple[TradeRecord, PositionRecord, OcoOrder]], now: datetime) -> None:
        """Each list protects its position: its row takes the exchange's status and the position points at it (one
        transaction for all), then each trade is announced."""
        if not placed:
            return
        async with self.uow() as uow:
            await uow.orders.mark_many([(oco.list_client_order_id, RowStatus.of(oco.list_status))
                                        for _, _, oco in placed], now)
            await uow.positions.set_protections([(trade.id, oco.list_client_order_id, position.stop_loss,
                                                  position.take_profit) for trade, position, oco in placed])
            await uow.commit()
        for trade, position, oco in placed:
            await self.emit(trade.user_id, TradeExecuted(trade.id, trade.symbol, trade.amount, trade.price,
                                                         position.stop_loss, position.take_profit,
                                                         oco.list_client_order_id), now)
