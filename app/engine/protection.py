"""Protection: the exchange-side OCO (take profit + stop loss) that every position carries."""

from __future__ import annotations

from datetime import datetime

from app.domain.errors import ExchangeError, OrderStatusUnknown, RateLimited
from app.domain.events import TradeExecuted
from app.domain.ports import ExchangeAdapter
from app.domain.records import OrderRecord, PositionRecord, Purpose, RowStatus, TradeRecord
from app.domain.values import OcoOrder, OrderType, Side, SymbolRules
from app.engine.bookkeeping import stop_limit_price
from app.engine.desk import Desk


class Protection(Desk):
    """Places a position's OCO with retries, waiting out rate limits, and links it to the position."""

    async def protect(self, exchange: ExchangeAdapter, trade: TradeRecord, now: datetime) -> str | None:
        """Place the OCO (with retries, waiting out a rate limit). None once the position is protected (or no longer
        needs it: gone, or being closed); else why it could not be placed."""
        async with self.uow() as uow:
            position = await uow.positions.get(trade.id)
            attempt = len(await uow.orders.for_trade(trade.id, Purpose.PROTECT))
        if position is None or position.closing_reason is not None:
            return None
        rules = await exchange.get_symbol_rules(trade.symbol)
        failures, waited_s, last_error = 0, 0.0, ""
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
                await self.link(trade, position, oco, now)
                return None
            failures, last_error = failures + 1, oco
        return last_error or "not placed"

    async def _send_oco(self, exchange: ExchangeAdapter, position: PositionRecord, list_id: str, rules: SymbolRules,
                        now: datetime) -> OcoOrder | str:
        """The OCO, or why it failed. A rate limit (nothing sent) is raised for the caller to wait out."""
        limit = stop_limit_price(position.stop_loss, self.parts.limits.stop_limit_gap_pct, rules)
        await self.write_order(OrderRecord(
            client_order_id=list_id, user_id=position.user_id, purpose=Purpose.PROTECT, symbol=position.symbol,
            side=Side.SELL, type=OrderType.OCO, quantity=position.amount, status=RowStatus.PENDING_SEND,
            price=position.take_profit, stop_price=position.stop_loss, trade_id=position.trade_id,
        ), now)
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

    async def link(self, trade: TradeRecord, position: PositionRecord, oco: OcoOrder, now: datetime) -> None:
        """The list protects the position: its row takes the exchange's status and the position points at it."""
        async with self.uow() as uow:
            await uow.orders.mark(oco.list_client_order_id, RowStatus.of(oco.list_status), now)
            await uow.positions.set_protection(trade.id, oco.list_client_order_id, position.stop_loss,
                                               position.take_profit)
            await uow.commit()
        await self.emit(trade.user_id, TradeExecuted(trade.id, trade.symbol, trade.amount, trade.price, position.stop_loss,
                                                     position.take_profit, oco.list_client_order_id), now)
