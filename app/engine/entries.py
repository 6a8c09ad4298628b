"""Entries: the market orders, their booking as trades and positions, and their protection, for one user's entry
or a batch of users' entries going through the same steps together."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from app.domain.books import EngineBooks
from app.domain.clock import ms_from_utc
from app.domain.errors import (
    ConfigurationError,
    ExchangeError,
    OrderRejected,
    OrderStatusUnknown,
    TemporaryExchangeError,
)
from app.domain.events import EngineError
from app.domain.ports import ExchangeAdapter
from app.domain.records import OrderRecord, PositionRecord, Purpose, Remainder, RowStatus, TradeRecord
from app.domain.risk import TradingConfig
from app.domain.values import Order, OrderType, RiskDecision, Side, SymbolRules, TradeStatus
from app.engine.analysis import SymbolAnalysis
from app.engine.bookkeeping import EntryFill, entry_fill, reanchor
from app.engine.desk import Desk, EngineParts
from app.engine.exits import Exits
from app.engine.protection import FirstList, first_list_id, list_row
from app.engine.settings import EntryPlan, log, trades_log


@dataclass(frozen=True, slots=True)
class ApprovedEntry:
    """An entry the risk manager approved: one user's buy of one symbol."""

    config: TradingConfig
    symbol: str
    decision: RiskDecision
    analysis: SymbolAnalysis


@dataclass(slots=True)
class _Entry:
    """An entry on its way through the order path: its row, the exchange's answer, then its trade."""

    row: OrderRecord
    exchange: ExchangeAdapter
    order: Order | None = None
    trade: TradeRecord | None = None
    first: FirstList | None = None


@dataclass(frozen=True, slots=True)
class _Mark:
    """What an order row takes from the exchange's answer (or its failure)."""

    client_id: str
    status: RowStatus
    error: str | None = None
    order: Order | None = None


class Entries(Desk):
    """Sends approved entries and finishes them: booked from the exchange's fills, then protected (or sold)."""

    def __init__(self, parts: EngineParts, exits: Exits) -> None:
        super().__init__(parts)
        self.exits = exits
        # tests only (WORKER_STALL_SECONDS): awaited once the entries are sent and before anything is recorded
        self.after_sending: Callable[[], Awaitable[None]] | None = None

    async def execute_many(self, approved: Sequence[ApprovedEntry], now: datetime) -> list[TradeRecord | None]:
        """Entries of different users, each a market order and then the protective OCO sized to what was
        received; no unprotected position survives. Each trade, or None where an entry bought nothing.

        They go through the order path's steps together: every row written (one transaction) before any order
        goes out, every order sent, the answers recorded (one transaction), every fill booked as its trade and
        position with the row of its first list (one transaction), every list placed, the placed ones linked (one
        transaction). Booking and protection are the steps reconciliation runs: whatever this cycle could not
        finish (a lost answer, a failed read, a crash between two steps) the next cycle finishes from what the
        exchange says. One entry's fault is reported and leaves the others going.
        """
        assert len({a.config.user_id for a in approved}) == len(approved), "one entry per user at a time"
        entries = [_Entry(self._entry_row(a, now), await self.exchanges.for_user(a.config.user_id)) for a in approved]
        async with self.uow() as uow:
            await uow.orders.add_many([entry.row for entry in entries], now)
            await uow.commit()
        marks = [mark for entry in entries if (mark := await self._send_entry(entry, now)) is not None]
        if self.after_sending is not None:
            await self.after_sending()
        await self._record_marks(marks, now)
        filled = [e for e in entries if e.order is not None and e.order.executed_qty > 0]
        await self._book(filled, now, guarded=True)
        await self.exits.secure_all([(e.exchange, e.trade, e.first) for e in filled
                                     if e.trade is not None and e.first is not None], now)
        return [e.trade for e in entries]

    async def finish_entry(self, exchange: ExchangeAdapter, row: OrderRecord, order: Order,
                            now: datetime) -> TradeRecord:
        """Book a filled entry as its trade and position, then protect it (reconciliation's step for an entry it
        found filled)."""
        entry = _Entry(row, exchange, order)
        await self._book([entry], now, guarded=False)
        assert entry.trade is not None and entry.first is not None
        await self.exits.secure_all([(exchange, entry.trade, entry.first)], now)
        return entry.trade

    @staticmethod
    def _entry_row(approved: ApprovedEntry, now: datetime) -> OrderRecord:
        user_id, symbol, decision = approved.config.user_id, approved.symbol, approved.decision
        return OrderRecord(
            client_order_id=f"trd{user_id}-{symbol}-{ms_from_utc(now)}", user_id=user_id, purpose=Purpose.ENTRY,
            symbol=symbol, side=Side.BUY, type=OrderType.MARKET, quantity=decision.quantity,
            status=RowStatus.PENDING_SEND, price=decision.entry_price, stop_price=decision.stop_loss,
            take_profit=decision.take_profit, confidence=approved.analysis.report.signal.confidence,
            analysis_id=approved.analysis.analysis_id, created_at=now,
        )

    async def _send_entry(self, entry: _Entry, now: datetime) -> _Mark | None:
        """The market BUY; what its row must record when the answer is not a fill (a fill's state is recorded
        with its trade). The answer, if any, is kept on the entry."""
        row, exchange = entry.row, entry.exchange
        client_id, symbol, user_id = row.client_order_id, row.symbol, row.user_id
        try:
            order = await exchange.place_market_order(symbol, Side.BUY, row.quantity, client_id)
        except OrderStatusUnknown as e:
            found = await self.find_order(exchange, symbol, client_id)
            if found is None:
                await self.emit(user_id, EngineError(f"entry status unknown: {e}", symbol=symbol), now)
                return _Mark(client_id, RowStatus.UNKNOWN, str(e))
            order = found
        except (OrderRejected, TemporaryExchangeError) as e:
            await self.emit(user_id, EngineError(f"entry not placed: {e}", symbol=symbol), now)
            return _Mark(client_id, RowStatus.REJECTED, str(e))
        except (ExchangeError, ConfigurationError) as e:  # left as sent: reconciliation asks the exchange
            await self._report(row, e, now)
            return None
        self.metrics.orders_placed.labels(type="entry", outcome=order.status.value).inc()
        entry.order = order
        return _Mark(client_id, RowStatus.of(order.status), order=order) if order.executed_qty == 0 else None

    async def _record_marks(self, marks: Sequence[_Mark], now: datetime) -> None:
        if not marks:
            return
        async with self.uow() as uow:
            for mark in marks:
                if mark.order is not None:
                    await uow.orders.record_exchange_state(mark.client_id, mark.order, now)
                await uow.orders.mark(mark.client_id, mark.status, now, mark.error)
            await uow.commit()

    async def _book(self, entries: Sequence[_Entry], now: datetime, guarded: bool) -> None:
        """Book filled entries, each as its trade and position with the entry's row updated from the exchange and
        the row of the position's first protection list, all in one transaction. The trade's time is the bot's
        own: when the entry's row was written. `guarded`: an entry whose fill cannot be read is reported and left
        to reconciliation, else its error is raised."""
        plans = []
        for entry in entries:
            try:
                plans.append((entry, await self._booking(entry)))
            except (ExchangeError, ConfigurationError) as e:
                if not guarded:
                    raise
                await self._report(entry.row, e, now)
        if not plans:
            return
        async with self.uow() as uow:
            await self._book_entries(uow, plans, now)
            await uow.commit()
        for entry, booking in plans:
            trades_log.info("ENTRY user=%s %s qty=%s @ %s stop=%s target=%s", entry.row.user_id, entry.row.symbol,
                            booking.fill.amount, booking.fill.price, booking.stop, booking.target)

    async def _booking(self, entry: _Entry) -> _Booking:
        """What the exchange's fill means for the books: the fill, the exits re-anchored to it, the base asset free."""
        row, order, exchange = entry.row, entry.order, entry.exchange
        assert order is not None
        if row.stop_price is None or row.take_profit is None:
            raise ConfigurationError(f"entry {row.client_order_id} has no stop or target on its row")
        plan = EntryPlan(row.price or order.avg_price, row.stop_price, row.take_profit, row.confidence or 0,
                         row.analysis_id)
        rules = await exchange.get_symbol_rules(order.symbol)
        fill = entry_fill(order, rules)
        stop, target = reanchor(fill.price, plan.entry_price, plan.stop_loss, plan.take_profit, rules)
        free_base = (await exchange.get_account_balance(rules.base_asset)).free
        return _Booking(plan, rules, fill, stop, target, free_base)

    async def _book_entries(self, uow: EngineBooks, plans: Sequence[tuple[_Entry, _Booking]], now: datetime) -> None:
        """Each entry's trade and position (set on the entry), its row updated from the exchange, the remainder its
        rounding leaves, and the row of its position's first list; a statement per kind of row for them all."""
        keys = [(entry.row.user_id, entry.row.symbol) for entry, _ in plans]
        assert len(set(keys)) == len(keys), "one entry per user and symbol at a time"
        carried = await uow.dust.get_many(keys)
        # what rounding to the step left behind last time rides along (its cost stays carried until the exit that
        # sells it); what this entry's rounding leaves is carried in its place
        sellable = {key: min(b.fill.held + carried[key].amount, b.free_base) for key, (_, b) in zip(keys, plans, strict=True)}
        quantities = {key: b.rules.round_qty(sellable[key]) for key, (_, b) in zip(keys, plans, strict=True)}
        await uow.dust.set_many({key: Remainder(sellable[key] - quantities[key], carried[key].cost) for key in keys})
        trades = await uow.trades.add_many([_trade(entry, booking, now) for entry, booking in plans])
        for (entry, booking), trade, key in zip(plans, trades, keys, strict=True):
            position = PositionRecord(trade.id, entry.row.user_id, entry.row.symbol, quantities[key], booking.fill.price,
                                      booking.stop, booking.target, None, trade.executed_at)
            entry.trade = trade
            entry.first = FirstList(position, list_row(position, first_list_id(entry.row.client_order_id)))
        firsts = [entry.first for entry, _ in plans if entry.first is not None]
        await uow.positions.add_many([first.position for first in firsts])
        await uow.orders.record_exchange_states([(entry.row.client_order_id, entry.order, entry.trade.id)
                                                 for entry, _ in plans if entry.order and entry.trade], now)
        await uow.orders.add_many([first.row for first in firsts], now)

    async def _report(self, row: OrderRecord, error: Exception, now: datetime) -> None:
        log.error("user %s, %s: %s", row.user_id, row.symbol, error)
        await self.emit(row.user_id, EngineError(str(error), symbol=row.symbol), now)


@dataclass(frozen=True, slots=True)
class _Booking:
    plan: EntryPlan
    rules: SymbolRules
    fill: EntryFill
    stop: Decimal
    target: Decimal
    free_base: Decimal


def _trade(entry: _Entry, booking: _Booking, now: datetime) -> TradeRecord:
    """The trade an entry's fill books. Its time is the bot's own: when the entry's row was written."""
    row, fill = entry.row, booking.fill
    return TradeRecord(
        id=0, user_id=row.user_id, symbol=row.symbol, side=Side.BUY.value, status=TradeStatus.FILLED,
        amount=fill.amount, price=fill.price, stop_loss=booking.stop, take_profit=booking.target,
        ai_signal_confidence=booking.plan.confidence, entry_client_order_id=row.client_order_id,
        entry_fee=fill.fee_usdt, fees=fill.fee_usdt, executed_at=row.created_at or now,
        analysis_id=booking.plan.analysis_id,
    )
