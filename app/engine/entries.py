"""Entries: the market order, its booking as trade and position, and its protection."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from app.domain.clock import ms_from_utc
from app.domain.errors import ConfigurationError, OrderRejected, OrderStatusUnknown, TemporaryExchangeError
from app.domain.events import EngineError
from app.domain.ports import ExchangeAdapter
from app.domain.records import OrderRecord, PositionRecord, Purpose, Remainder, RowStatus, TradeRecord
from app.domain.risk import TradingConfig
from app.domain.values import Order, OrderType, RiskDecision, Side, TradeStatus
from app.engine.analysis import SymbolAnalysis
from app.engine.bookkeeping import entry_fill, reanchor
from app.engine.desk import Desk, EngineParts
from app.engine.exits import Exits
from app.engine.protection import FirstList, first_list_id, list_row
from app.engine.settings import EntryPlan, trades_log


class Entries(Desk):
    """Sends an approved entry and finishes it: booked from the exchange's fill, then protected (or sold)."""

    def __init__(self, parts: EngineParts, exits: Exits) -> None:
        super().__init__(parts)
        self.exits = exits

    async def execute(self, config: TradingConfig, symbol: str, decision: RiskDecision,
                             analysis: SymbolAnalysis, now: datetime) -> TradeRecord | None:
        """Market entry, then the protective OCO sized to what was received; no unprotected position survives.

        The order row is written before the order goes out, and booking and protection are the same steps that
        reconciliation runs: whatever this cycle could not finish (a lost answer, a failed read, a crash) the next
        cycle finishes from what the exchange says.
        """
        user_id = config.user_id
        exchange = await self.exchanges.for_user(user_id)
        row = OrderRecord(
            client_order_id=f"trd{user_id}-{symbol}-{ms_from_utc(now)}", user_id=user_id, purpose=Purpose.ENTRY,
            symbol=symbol, side=Side.BUY, type=OrderType.MARKET, quantity=decision.quantity, status=RowStatus.PENDING_SEND,
            price=decision.entry_price, stop_price=decision.stop_loss, take_profit=decision.take_profit,
            confidence=analysis.report.signal.confidence, analysis_id=analysis.analysis_id, created_at=now,
        )
        await self.write_order(row, now)
        order = await self._send_entry(exchange, symbol, decision.quantity, row.client_order_id, user_id, now)
        if order is None or order.executed_qty == 0:
            return None
        return await self.finish_entry(exchange, row, order, now)

    async def finish_entry(self, exchange: ExchangeAdapter, row: OrderRecord, order: Order,
                            now: datetime) -> TradeRecord:
        """Book a filled entry as its trade and position, then protect it. The trade's time is the bot's own: when
        the order row was written."""
        if row.stop_price is None or row.take_profit is None:
            raise ConfigurationError(f"entry {row.client_order_id} has no stop or target on its row")
        plan = EntryPlan(row.price or order.avg_price, row.stop_price, row.take_profit, row.confidence or 0,
                         row.analysis_id)
        trade, first = await self._book_entry(row.user_id, order, plan, row.created_at or now, now)
        await self.exits.secure(exchange, trade, now, first)
        return trade

    async def _send_entry(self, exchange: ExchangeAdapter, symbol: str, quantity: Decimal, client_id: str,
                          user_id: int, now: datetime) -> Order | None:
        order: Order | None
        try:
            order = await exchange.place_market_order(symbol, Side.BUY, quantity, client_id)
        except OrderStatusUnknown as e:
            order = await self.find_order(exchange, symbol, client_id)
            if order is None:
                await self.mark_order(client_id, RowStatus.UNKNOWN, now, str(e))
                await self.emit(user_id, EngineError(f"entry status unknown: {e}", symbol=symbol), now)
                return None
        except (OrderRejected, TemporaryExchangeError) as e:
            await self.mark_order(client_id, RowStatus.REJECTED, now, str(e))
            await self.emit(user_id, EngineError(f"entry not placed: {e}", symbol=symbol), now)
            return None
        if order.executed_qty == 0:  # else booking records the exchange's state with the trade
            await self.mark_order(client_id, RowStatus.of(order.status), now, order=order)
        self.metrics.orders_placed.labels(type="entry", outcome=order.status.value).inc()
        return order

    async def _book_entry(self, user_id: int, order: Order, plan: EntryPlan, executed_at: datetime,
                          now: datetime) -> tuple[TradeRecord, FirstList]:
        """The trade and its position, the entry's row updated from the exchange, and the row of the position's
        first protection list: one transaction."""
        exchange = await self.exchanges.for_user(user_id)
        rules = await exchange.get_symbol_rules(order.symbol)
        fill = entry_fill(order, rules)
        stop, target = reanchor(fill.price, plan.entry_price, plan.stop_loss, plan.take_profit, rules)
        free_base = (await exchange.get_account_balance(rules.base_asset)).free
        async with self.uow() as uow:
            # what rounding to the step left behind last time rides along (its cost stays carried until the exit
            # that sells it); what this entry's rounding leaves is carried in its place
            carried = await uow.dust.get(user_id, order.symbol)
            sellable = min(fill.held + carried.amount, free_base)
            quantity = rules.round_qty(sellable)
            await uow.dust.set(user_id, order.symbol, Remainder(sellable - quantity, carried.cost))
            trade: TradeRecord = await uow.trades.add(TradeRecord(
                id=0, user_id=user_id, symbol=order.symbol, side=Side.BUY.value, status=TradeStatus.FILLED,
                amount=fill.amount, price=fill.price, stop_loss=stop, take_profit=target,
                ai_signal_confidence=plan.confidence, entry_client_order_id=order.client_order_id,
                entry_fee=fill.fee_usdt, fees=fill.fee_usdt, executed_at=executed_at, analysis_id=plan.analysis_id,
            ))
            position = PositionRecord(trade.id, user_id, order.symbol, quantity, fill.price, stop, target, None,
                                      executed_at)
            await uow.positions.add(position)
            await uow.orders.record_exchange_state(order.client_order_id, order, now)
            await uow.orders.mark(order.client_order_id, RowStatus.of(order.status), now, trade_id=trade.id)
            first = FirstList(position, list_row(position, first_list_id(order.client_order_id)))
            await uow.orders.add(first.row, now)
            await uow.commit()
        trades_log.info("ENTRY user=%s %s qty=%s @ %s stop=%s target=%s", user_id, order.symbol,
                        fill.amount, fill.price, stop, target)
        return trade, first
