"""Exits: TP/SL fills, timeouts, lost lists and manual closes, each finished from what the exchange confirms."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from app.domain.books import EngineBooks
from app.domain.errors import (
    ConfigurationError,
    ExchangeError,
    OrderNotFound,
    OrderStatusUnknown,
    RateLimited,
    RuleViolation,
    TemporaryExchangeError,
)
from app.domain.events import EmergencyExit, EngineError, PositionClosed
from app.domain.ports import ExchangeAdapter
from app.domain.records import OrderRecord, PositionRecord, Purpose, Remainder, RowStatus, TradeRecord
from app.domain.values import (
    ZERO,
    ExitReason,
    OcoOrder,
    Order,
    OrderStatus,
    OrderType,
    Side,
    SymbolRules,
    TradeStatus,
    oco_leg_client_ids,
)
from app.engine.bookkeeping import profit_pct, recorded_exit_fill, remainder_cost, round_trip_profit
from app.engine.desk import Desk, EngineParts
from app.engine.protection import FirstList, Protection
from app.engine.settings import log, trades_log


class Exits(Desk):
    """Watches every open position and closes it: the list's filled leg, a stop the market gapped through, a
    list the venue lost, the timeout, or a manual close. Exits of one user run one at a time."""

    def __init__(self, parts: EngineParts, protection: Protection) -> None:
        super().__init__(parts)
        self.protection = protection
        # the engine's exit check and a manual close from the API share the event loop: the second must find the
        # position already gone rather than close it again
        self._exit_locks: dict[int, asyncio.Lock] = {}

    async def check_open_positions(self, now: datetime) -> int:
        """Book TP/SL exits, finish exits under way, re-protect lost lists and force-close stale positions. The
        positions and their users' timeouts are read once; a position is read again only when it calls for an
        exit (a manual close may have changed it since)."""
        async with self.uow() as uow:
            positions: list[PositionRecord] = await uow.positions.all()
            timeouts = await uow.configs.position_timeouts(sorted({p.user_id for p in positions}))
        closed = 0
        async with self.events_held():  # a cycle's closes announced together
            for listed in positions:
                async with self._exit_lock(listed.user_id):
                    closed += await self._checked(listed, timeouts[listed.user_id], now)
        return closed

    def _exit_lock(self, user_id: int) -> asyncio.Lock:
        return self._exit_locks.setdefault(user_id, asyncio.Lock())

    async def _checked(self, listed: PositionRecord, timeout_minutes: int, now: datetime) -> int:
        """_check_position with its errors logged and reported; 1 when the position was closed. `listed` is the
        position as the cycle read it: while the exchange says nothing is due, that read is enough."""
        position = listed
        try:
            act, answer = await self._calls_for_action(listed, timeout_minutes, now)
            if not act:
                return 0
            fresh = await self.open_position(listed.trade_id)
            if fresh is None:
                return 0  # closed meanwhile (a manual close)
            position = fresh
            known = answer if fresh.oco_order_id == listed.oco_order_id else None
            return int(await self._check_position(position, timeout_minutes, now, known))
        except TemporaryExchangeError as e:
            log.info("position %s not checked this cycle: %s", position.trade_id, e)
        except (ExchangeError, ConfigurationError) as e:
            log.error("position %s of user %s: %s", position.trade_id, position.user_id, e)
            await self.emit(position.user_id, EngineError(str(e), trade_id=position.trade_id), now)
        except Exception:  # a fault in one position's exit must not stop every other position's
            log.exception("position %s of user %s: exit check failed", position.trade_id, position.user_id)
        return 0

    async def _calls_for_action(self, position: PositionRecord, timeout_minutes: int,
                                now: datetime) -> tuple[bool, OcoOrder | OrderNotFound | None]:
        """Whether _check_position has anything to do (an exit under way, no list, a list the exchange does not know
        or that ended, or the timeout), with the exchange's answer about the list when it was asked (one question
        for a protected position, not asked again)."""
        if position.closing_reason is not None or position.oco_order_id is None or _due(position, timeout_minutes, now):
            return True, None
        exchange = await self.exchanges.for_user(position.user_id)
        try:
            oco = await exchange.get_oco_order_status(position.symbol, position.oco_order_id)
        except OrderNotFound as e:
            return True, e
        return _exit_reason(oco) is not None, oco

    async def _check_position(self, position: PositionRecord, timeout_minutes: int, now: datetime,
                              known: OcoOrder | OrderNotFound | None = None) -> bool:
        """`known`: the exchange's answer about the position's list in this check, if it was asked already."""
        exchange = await self.exchanges.for_user(position.user_id)
        if position.closing_reason is not None:  # an exit under way: finish it
            return await self._finish_exit(exchange, position, now) is not None
        if position.oco_order_id is None:
            return False  # reconciliation protects it
        try:
            if isinstance(known, OrderNotFound):
                raise known
            oco = known or await exchange.get_oco_order_status(position.symbol, position.oco_order_id)
        except OrderNotFound:
            return await self._protection_gone(exchange, position, timeout_minutes, now)
        reason = _exit_reason(oco)
        if reason is None and _due(position, timeout_minutes, now):
            reason = ExitReason.TIMEOUT
        if reason is None:
            return False
        return await self.close_position(exchange, position, reason, now) is not None

    async def _protection_gone(self, exchange: ExchangeAdapter, position: PositionRecord, timeout_minutes: int,
                               now: datetime) -> bool:
        """The exchange knows no list by the position's id (-2013). Its legs tell what happened: a filled leg is
        the exit; a live leg means the answer was wrong (nothing to do); otherwise the list is gone: protect again,
        or close a position that is due."""
        assert position.oco_order_id is not None
        legs = await self.legs_of(exchange, position.symbol, position.oco_order_id)
        if any(not leg.status.is_final for leg in legs):
            log.warning("order list %s not found, but its legs are live", position.oco_order_id)
            return False
        filled = next((leg for leg in legs if leg.status == OrderStatus.FILLED), None)
        if filled is not None or _due(position, timeout_minutes, now):
            reason = ExitReason.TIMEOUT if filled is None else _leg_reason(filled)
            return await self.close_position(exchange, position, reason, now) is not None
        # with no leg found either, the answers may both be wrong: NOT_FOUND lists are asked again by every
        # re-protection and taken down by every exit, so coins locked in a list the exchange denied are found
        gone = RowStatus.ALL_DONE if legs else RowStatus.NOT_FOUND
        await self._unlink(position, now, "gone from the exchange", gone)
        trade = await self.trade_of(position)
        if trade is not None and await self.secure(exchange, trade, now):
            await self.report_repair(position, "re-protected", now, f"order list {position.oco_order_id} was gone")
        return False

    async def legs_of(self, exchange: ExchangeAdapter, symbol: str, list_id: str) -> list[Order]:
        """The legs of an order list looked up one by one (those the exchange still knows)."""
        legs = []
        for leg_id in oco_leg_client_ids(list_id):
            with contextlib.suppress(OrderNotFound):
                legs.append(await exchange.get_order(symbol, leg_id))
        return legs

    async def close_trade(self, user_id: int, trade_id: int, reason: ExitReason) -> TradeRecord:
        """The manual close (and any other close path): cancel the OCO, sell at market, book it."""
        async with self._exit_lock(user_id):
            return await self._close_trade(user_id, trade_id, reason)

    async def _close_trade(self, user_id: int, trade_id: int, reason: ExitReason) -> TradeRecord:
        async with self.uow() as uow:
            trade: TradeRecord | None = await uow.trades.get(user_id, trade_id)
            position: PositionRecord | None = await uow.positions.get(trade_id)
        if trade is None or trade.status != TradeStatus.FILLED or position is None:
            raise RuleViolation(f"trade {trade_id} is not open")
        exchange = await self.exchanges.for_user(user_id)
        closed = await self.close_position(exchange, position, reason, self.clock.now())
        if closed is None:
            raise RuleViolation(f"trade {trade_id} is being closed but not yet done (the next cycle finishes it); "
                                "see the event log")
        return closed

    async def close_position(self, exchange: ExchangeAdapter, position: PositionRecord, reason: ExitReason,
                              now: datetime) -> TradeRecord | None:
        """Start the exit (stored first, so that any interruption is finished by the next cycle), then finish it."""
        if position.closing_reason is None:
            async with self.uow() as uow:
                await uow.positions.mark_closing(position.trade_id, reason)
                await uow.commit()
            position = dataclasses.replace(position, closing_reason=reason)
        return await self._finish_exit(exchange, position, now)

    async def _finish_exit(self, exchange: ExchangeAdapter, position: PositionRecord,
                           now: datetime) -> TradeRecord | None:
        """Take the protection down, sell what the position still holds, and book the close from every exit fill
        the exchange confirmed; None while coins remain to be sold (the next cycle goes on)."""
        reason = await self._take_down_protection(exchange, position, now) or position.closing_reason
        position = dataclasses.replace(position, oco_order_id=None)
        reason = reason or ExitReason.MANUAL
        rules = await exchange.get_symbol_rules(position.symbol)
        waited_s = 0.0
        for _ in range(self.settings.exit_attempts):
            fills = await self._settled_exits(exchange, position, now)
            if fills is None:
                return None
            quantity = _left_to_sell(position, fills, rules)
            if quantity == 0:
                return await self._book_close(position, fills, reason, rules, now)
            try:
                if not await self._send_exit(exchange, position, quantity, now):
                    return None
            except RateLimited as e:
                if not await self.wait_out(e, waited_s):
                    return None
                waited_s += e.retry_after_s
        return None

    async def _take_down_protection(self, exchange: ExchangeAdapter, position: PositionRecord,
                                    now: datetime) -> ExitReason | None:
        """Every list of the trade that may still be live or have sold something (the linked one, and any an
        earlier attempt placed that was never linked): cancelled (or its resting legs), what its legs sold recorded
        on exit rows, its row final, the position unlinked. The exit reason when a leg filled completely."""
        async with self.uow() as uow:
            attempts = await uow.orders.for_trade(position.trade_id, Purpose.PROTECT)
        lists = {row.client_order_id for row in attempts if row.status not in _DONE_LISTS}
        lists.update([position.oco_order_id] if position.oco_order_id is not None else [])
        # the exchange first (an error leaves everything to be asked again), then what it said, in one transaction
        found = [(list_id, await self._cancelled_legs(exchange, position.symbol, list_id)) for list_id in sorted(lists)]
        async with self.uow() as uow:
            for list_id, legs in found:
                await self._record_leg_fills(uow, position, legs, now)
                if await uow.orders.get(list_id) is not None:  # a list adopted from elsewhere may have no row
                    status = RowStatus.ALL_DONE if legs else RowStatus.NOT_FOUND
                    await uow.orders.mark(list_id, status, now, None if legs else "not on the exchange")
            if position.oco_order_id is not None:  # its row took its state above
                await uow.positions.set_protection(position.trade_id, None, position.stop_loss, position.take_profit)
            await uow.commit()
        filled = next((leg for _, legs in found for leg in legs if leg.status == OrderStatus.FILLED), None)
        return _leg_reason(filled) if filled is not None else None

    async def _cancelled_legs(self, exchange: ExchangeAdapter, symbol: str, list_id: str) -> list[Order]:
        """The list's legs once none can fill any more (cancelled, or final already); none when the exchange knows
        neither the list nor its legs. Raises TemporaryExchangeError while a leg still rests."""
        try:
            oco = await exchange.get_oco_order_status(symbol, list_id)
            if oco.is_open:
                with contextlib.suppress(OrderNotFound):
                    oco = await exchange.cancel_oco_order(symbol, list_id)
            legs = list(oco.legs)
        except OrderNotFound:  # an answer that forgets a list is checked against its legs
            legs = await self.legs_of(exchange, symbol, list_id)
        for i, leg in enumerate(legs):
            if not leg.status.is_final:  # a stop-limit the market gapped through, or a list that did not cancel
                with contextlib.suppress(OrderNotFound):
                    legs[i] = await exchange.cancel_order(symbol, leg.client_order_id)
        if any(not leg.status.is_final for leg in legs):
            raise TemporaryExchangeError(f"order list {list_id} could not be cancelled yet")
        return legs

    @staticmethod
    async def _record_leg_fills(uow: EngineBooks, position: PositionRecord, legs: Sequence[Order],
                                now: datetime) -> None:
        """Legs that sold something become exit rows of the trade: the close is booked from its exit rows."""
        for leg in (leg for leg in legs if leg.executed_qty > 0):
            if await uow.orders.get(leg.client_order_id) is None:
                await uow.orders.add(OrderRecord(
                    client_order_id=leg.client_order_id, user_id=position.user_id, purpose=Purpose.EXIT,
                    symbol=position.symbol, side=leg.side, type=leg.type, quantity=leg.orig_qty,
                    status=RowStatus.of(leg.status), trade_id=position.trade_id, price=leg.price,
                    stop_price=leg.stop_price,
                ), now)
            await uow.orders.record_exchange_state(leg.client_order_id, leg, now)

    async def _unlink(self, position: PositionRecord, now: datetime, why: str | None = None,
                      status: RowStatus = RowStatus.ALL_DONE) -> None:
        """The position's list is done with: its row takes `status`, the position no longer points at it."""
        assert position.oco_order_id is not None
        async with self.uow() as uow:
            if await uow.orders.get(position.oco_order_id) is not None:
                await uow.orders.mark(position.oco_order_id, status, now, why)
            await uow.positions.set_protection(position.trade_id, None, position.stop_loss, position.take_profit)
            await uow.commit()

    async def _settled_exits(self, exchange: ExchangeAdapter, position: PositionRecord,
                             now: datetime) -> list[OrderRecord] | None:
        """The trade's exit rows, each in its final state on the exchange (or NOT_FOUND: counted as selling nothing,
        asked again next time); None while one is still unknown."""
        async with self.uow() as uow:
            rows: list[OrderRecord] = await uow.orders.for_trade(position.trade_id, Purpose.EXIT)
        for row in (row for row in rows if not row.status.is_final):
            try:
                order = await exchange.get_order(row.symbol, row.client_order_id)
            except OrderNotFound:
                if not (row.status.awaiting_exchange or row.status == RowStatus.NOT_FOUND):
                    return None  # it was on the exchange: an answer that forgets it is not to be trusted
                # it never arrived, or the answer is wrong: it sold nothing for now, and is asked again every time
                await self.mark_order(row.client_order_id, RowStatus.NOT_FOUND, now, "not on the exchange (asked again)")
                continue
            except (TemporaryExchangeError, OrderStatusUnknown):
                return None
            await self.mark_order(row.client_order_id, RowStatus.of(order.status), now, order=order)
            if not order.status.is_final:
                return None
        if all(row.status.is_final for row in rows):
            return rows
        async with self.uow() as uow:  # as the books now record them (the exchange's state, taken once)
            return await uow.orders.for_trade(position.trade_id, Purpose.EXIT)

    async def _send_exit(self, exchange: ExchangeAdapter, position: PositionRecord, quantity: Decimal,
                         now: datetime) -> bool:
        """One market SELL of the position's coins; False when it failed (the next cycle tries again). A rate limit
        (nothing sent) is raised for the caller to wait out."""
        async with self.uow() as uow:
            trade = await uow.trades.get(position.user_id, position.trade_id)
            # every exit row counts, whatever became of it: a client id is never used twice
            number = len(await uow.orders.for_trade(position.trade_id, Purpose.EXIT)) + 1
        assert trade is not None
        client_id = f"{trade.entry_client_order_id}-x{number}"
        await self.write_order(OrderRecord(
            client_order_id=client_id, user_id=trade.user_id, purpose=Purpose.EXIT, symbol=trade.symbol,
            side=Side.SELL, type=OrderType.MARKET, quantity=quantity, status=RowStatus.PENDING_SEND, trade_id=trade.id,
        ), now)
        try:
            order = await exchange.place_market_order(trade.symbol, Side.SELL, quantity, client_id)
        except OrderStatusUnknown as e:
            await self.mark_order(client_id, RowStatus.UNKNOWN, now, str(e))
            return True  # settled by the next look at the exit rows
        except RateLimited as e:
            await self.mark_order(client_id, RowStatus.REJECTED, now, str(e))
            raise
        except ExchangeError as e:
            await self.mark_order(client_id, RowStatus.REJECTED, now, str(e))
            await self.emit(trade.user_id, EngineError(f"exit failed: {e}", trade_id=trade.id), now)
            return False
        await self.mark_order(client_id, RowStatus.of(order.status), now, order=order)
        self.metrics.orders_placed.labels(type="exit", outcome=order.status.value).inc()
        if number > 1 or order.executed_qty < quantity:
            await self.report_repair(position, "sold remainder of partial exit" if number > 1 else "partial exit",
                                      now, f"{order.executed_qty} of {quantity} sold by {client_id}")
        return True

    async def _book_close(self, position: PositionRecord, fills: Sequence[OrderRecord], reason: ExitReason,
                          rules: SymbolRules, now: datetime) -> TradeRecord | None:
        """The close as the exchange confirmed it: every exit fill of the trade together. The trade's P&L is its own
        round trip (round_trip_profit): what rounding leaves unsold is valued at the exit price and carried at
        that cost into the next exit of the symbol."""
        sold = [row for row in fills if row.executed_qty > 0]
        if not sold:
            log.error("trade %s: nothing sold and %s %s below what the exchange accepts", position.trade_id,
                      position.amount, position.symbol)
            return None
        fill = recorded_exit_fill(sold, rules)
        async with self.uow() as uow:
            trade = await uow.trades.get(position.user_id, position.trade_id)
            if trade is None:
                raise LookupError(f"position {position.trade_id} has no trade")
            entry_quote = trade.amount * trade.price
            carried = await uow.dust.get(trade.user_id, trade.symbol)
            unsold = carried.amount + position.amount - fill.quantity  # this entry's rounding and what no sell took
            left = Remainder(unsold, remainder_cost(unsold, fill.price))
            profit = round_trip_profit(entry_quote, fill, carried, left)
            closed: TradeRecord = await uow.trades.close(
                trade.id, fill.price, reason, fill.fee_usdt, profit, profit_pct(profit, entry_quote),
                _closing_time(sold, trade.executed_at, now),
            )
            await uow.positions.remove(trade.id)
            if left != carried:
                await uow.dust.set(trade.user_id, trade.symbol, left)
            await uow.portfolios.record_close(trade.user_id, profit, closed.fees, now)
            await uow.commit()
        trades_log.info("EXIT user=%s %s %s @ %s pnl=%s", trade.user_id, trade.symbol, reason.value, fill.price, profit)
        await self.emit(trade.user_id, PositionClosed(trade.id, trade.symbol, reason.value, fill.price, profit), now)
        return closed

    async def secure(self, exchange: ExchangeAdapter, trade: TradeRecord, now: datetime, failures: int = 0,
                     last_error: str = "") -> bool:
        """Protect the trade's position; if protection cannot be placed, sell at once (EMERGENCY): a position
        without protection is never left open. True when it is protected. `failures` and `last_error`: attempts
        this cycle made already (see Protection.protect)."""
        error = await self.protection.protect(exchange, trade, now, failures, last_error)
        if error is None:
            return True
        position = await self.open_position(trade.id)
        if position is None:
            return False
        log.error("no protection for trade %s (%s): selling at market", trade.id, error)
        closed = await self.close_position(exchange, position, ExitReason.EMERGENCY, now)
        await self.emit(trade.user_id, EmergencyExit(trade.id, trade.symbol, f"protection could not be placed: {error}",
                                                     closed.exit_price if closed else None), now)
        return False

    async def secure_all(self, new: Sequence[tuple[ExchangeAdapter, TradeRecord, FirstList]], now: datetime) -> None:
        """Protect new positions, each booked with the row of its first list: every first list placed, the placed
        ones linked together; a position whose first list was not placed goes the whole way of `secure` (more
        attempts, each with its row, else the emergency sale)."""
        placed: list[tuple[TradeRecord, PositionRecord, OcoOrder]] = []
        again: list[tuple[ExchangeAdapter, TradeRecord, int, str]] = []
        for exchange, trade, first in new:
            try:
                oco = await self.protection.place_first(exchange, first, now)
            except (ExchangeError, ConfigurationError) as e:  # a rate limit (nothing was sent) is not a failure
                again.append((exchange, trade, 0, str(e)))
                continue
            if isinstance(oco, OcoOrder):
                placed.append((trade, first.position, oco))
            else:
                again.append((exchange, trade, 1, oco))
        await self.protection.link_all(placed, now)
        for exchange, trade, failures, error in again:
            try:
                await self.secure(exchange, trade, now, failures, error)
            except (ExchangeError, ConfigurationError) as e:  # reconciliation protects it next cycle
                log.error("trade %s of user %s not protected yet: %s", trade.id, trade.user_id, e)
                await self.emit(trade.user_id, EngineError(str(e), trade_id=trade.id), now)


# lists that can neither fill nor be live any more: the exchange said so (ALL_DONE, REJECT), or refused them when sent
_DONE_LISTS = frozenset({RowStatus.ALL_DONE, RowStatus.REJECT, RowStatus.REJECTED})


def _exit_reason(oco: OcoOrder) -> ExitReason | None:
    """Why a list calls for an exit: a filled leg (TP or SL), a stop the market gapped through (its leg still
    rests after the list ended: SL), or a list that ended otherwise (cancelled on the exchange: EMERGENCY)."""
    filled = oco.filled_leg
    if filled is not None:
        return _leg_reason(filled)
    if oco.is_open:
        return None
    stop_leg = oco.stop_loss_leg
    return ExitReason.STOP_LOSS if stop_leg.status in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED) \
        else ExitReason.EMERGENCY


def _due(position: PositionRecord, timeout_minutes: int, now: datetime) -> bool:
    """The position has been open for its timeout."""
    return now - position.opened_at >= timedelta(minutes=timeout_minutes)


def _leg_reason(leg: Order) -> ExitReason:
    return ExitReason.STOP_LOSS if leg.type in (OrderType.STOP_LOSS_LIMIT, OrderType.STOP_LOSS) \
        else ExitReason.TAKE_PROFIT


def _left_to_sell(position: PositionRecord, fills: Sequence[OrderRecord], rules: SymbolRules) -> Decimal:
    """What the next exit order sells: the position less what its exits sold, on the step; 0 when nothing the
    exchange would accept is left (below the minimum quantity, or the minimum notional at the last fill's price)."""
    sold = sum((row.executed_qty for row in fills), ZERO)
    quantity = rules.round_qty(position.amount - sold)
    if quantity < rules.min_qty or quantity <= 0:
        return ZERO
    last = next((row for row in reversed(fills) if row.executed_qty > 0), None)
    if last is not None and quantity * last.cumulative_quote_qty / last.executed_qty < rules.min_notional:
        return ZERO
    return quantity


def _closing_time(sold: Sequence[OrderRecord], opened_at: datetime, now: datetime) -> datetime:
    """When the exit filled, on the bot's clock: the exchange's execution time where it lies between the entry and
    now by the bot's clock (the same clock, as in paper trading, backtests and a venue-following clock: a stop that
    filled while the bot was down is booked at its fill), else now (a venue clock that runs apart from the bot's
    is never mixed into a duration)."""
    times = [row.transact_time for row in sold if row.transact_time is not None]
    filled_at = max(times) if times else now
    return filled_at if opened_at <= filled_at <= now else now
