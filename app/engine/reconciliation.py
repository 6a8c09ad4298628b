"""Reconciliation: every cycle finishes what an earlier step left unfinished, from the exchange's state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from app.domain.errors import (
    ConfigurationError,
    ExchangeError,
    OrderNotFound,
    OrderStatusUnknown,
    TemporaryExchangeError,
)
from app.domain.events import EngineError
from app.domain.ports import ExchangeAdapter
from app.domain.records import OrderRecord, PositionRecord, Purpose, RowStatus, TradeRecord
from app.domain.values import OrderType
from app.engine.desk import Desk, EngineParts
from app.engine.entries import Entries
from app.engine.settings import log


@dataclass(frozen=True, slots=True)
class Reconciled:
    """What a cycle's reconciliation left for the decisions."""

    unresolved: set[int]  # users whose state is unknown: they open nothing
    in_doubt: dict[int, set[str]]  # per user, symbols of entries the exchange denied: not bought again meanwhile


class Reconciler(Desk):
    """Entries without their trade, positions without their list, and lists the bot did not place."""

    def __init__(self, parts: EngineParts, entries: Entries) -> None:
        super().__init__(parts)
        self.entries = entries
        self.exits = entries.exits
        self.protection = entries.exits.protection

    async def reconcile(self, now: datetime) -> Reconciled:
        """Finish what did not finish: the users whose state is still unknown (they do not trade) and the symbols
        of entries the exchange denied (asked again: their users trade, but not those symbols)."""
        async with self.uow() as uow:
            entries: list[OrderRecord] = await uow.orders.unbooked_entries()
        unresolved: set[int] = set()
        in_doubt: dict[int, set[str]] = {}
        for row in entries:
            try:
                resolved = await self._resolve_entry(row, now)
            except (ExchangeError, ConfigurationError) as e:
                log.error("entry %s of user %s not reconciled: %s", row.client_order_id, row.user_id, e)
                resolved = False
            except Exception:  # one entry's fault must not stop the cycle for everyone
                log.exception("entry %s of user %s not reconciled", row.client_order_id, row.user_id)
                resolved = False
            if resolved is None:
                in_doubt.setdefault(row.user_id, set()).add(row.symbol)
            elif not resolved:
                unresolved.add(row.user_id)
        async with self.uow() as uow:
            positions: list[PositionRecord] = await uow.positions.all()
        for position in positions:
            if position.oco_order_id is None and position.closing_reason is None and position.user_id not in unresolved:
                try:
                    await self._reprotect(position, now)
                except (ExchangeError, ConfigurationError) as e:
                    log.error("position %s not protected yet: %s", position.trade_id, e)
                    unresolved.add(position.user_id)
        lists: dict[int, set[str | None]] = {}
        for p in positions:
            lists.setdefault(p.user_id, set()).add(p.oco_order_id)
        for user_id in sorted(set(lists) - unresolved):
            try:
                await self._adopt_strangers(user_id, lists[user_id], now)
            except (ExchangeError, ConfigurationError) as e:
                log.error("user %s: open order lists not checked: %s", user_id, e)
        return Reconciled(unresolved, in_doubt)

    async def _adopt_strangers(self, user_id: int, own: set[str | None], now: datetime) -> None:
        """Order lists on the exchange that the bot has no row for: recorded (adopted) and reported, never touched.
        `own` are the lists protecting the user's positions (their rows are written before they are placed)."""
        exchange = await self.exchanges.for_user(user_id)
        try:
            open_lists = await exchange.get_open_oco_orders()
        except TemporaryExchangeError:
            return
        for oco in (o for o in open_lists if o.list_client_order_id not in own):
            async with self.uow() as uow:
                known = await uow.orders.get(oco.list_client_order_id)
            if known is not None:
                continue
            leg = oco.stop_loss_leg
            await self.write_order(OrderRecord(
                client_order_id=oco.list_client_order_id, user_id=user_id, purpose=Purpose.ADOPTED, symbol=oco.symbol,
                side=leg.side, type=OrderType.OCO, quantity=leg.orig_qty, status=RowStatus.of(oco.list_status),
                price=oco.take_profit_leg.price, stop_price=leg.stop_price,
            ), now)
            log.warning("user %s: adopted order list %s that the bot did not place", user_id, oco.list_client_order_id)
            await self.emit(user_id, EngineError(f"found order list {oco.list_client_order_id} on the exchange that TRD Bot "
                                                 "did not place; it is recorded and left alone", symbol=oco.symbol), now)

    async def _resolve_entry(self, row: OrderRecord, now: datetime) -> bool | None:
        """An entry without its trade: book and protect it if it filled, drop it if it never arrived. False while
        its outcome is unknown; None while the exchange denies it (asked again next cycle)."""
        exchange = await self.exchanges.for_user(row.user_id)
        try:
            order = await exchange.get_order(row.symbol, row.client_order_id)
        except OrderNotFound:
            if not (row.status.awaiting_exchange or row.status == RowStatus.NOT_FOUND):
                log.error("entry %s was %s on the exchange, which no longer knows it", row.client_order_id, row.status)
                return False
            # it never arrived, or the answer is wrong: asked again every cycle for a day (the user trades meanwhile)
            given_up = row.created_at is not None and now - row.created_at > NOT_FOUND_PATIENCE
            await self.mark_order(row.client_order_id, RowStatus.REJECTED if given_up else RowStatus.NOT_FOUND, now,
                                  "never reached the exchange" if given_up else "not on the exchange (asked again)")
            return True if given_up else None
        except (TemporaryExchangeError, OrderStatusUnknown):
            return False
        await self.mark_order(row.client_order_id, RowStatus.of(order.status), now, order=order)
        if not order.status.is_final:
            return False  # a market order still working: ask again next cycle
        if order.executed_qty == 0:
            return True
        async with self.uow() as uow:
            booked = await uow.trades.by_entry(row.client_order_id)
        if booked is not None:
            await self.mark_order(row.client_order_id, RowStatus.of(order.status), now, trade_id=booked.id)
            return True
        trade = await self.entries.finish_entry(exchange, row, order, now)
        position = await self.open_position(trade.id)
        await self.report_repair(position or _position_of(trade), "adopted entry found filled", now,
                                  f"{order.executed_qty} {row.symbol} bought by {row.client_order_id}")
        return True

    async def _reprotect(self, position: PositionRecord, now: datetime) -> None:
        """A position without its list: link a list an earlier attempt did place, else place one now. A temporary
        error is raised (the user waits for the next cycle), never taken for "not on the exchange"."""
        exchange = await self.exchanges.for_user(position.user_id)
        trade = await self.trade_of(position)
        if trade is None:
            return
        async with self.uow() as uow:
            attempts = await uow.orders.for_trade(trade.id, Purpose.PROTECT)
        maybe_live = (RowStatus.EXECUTING, RowStatus.NOT_FOUND)
        for attempt in (a for a in attempts if a.status.awaiting_exchange or a.status in maybe_live):
            try:
                oco = await exchange.get_oco_order_status(position.symbol, attempt.client_order_id)
            except OrderNotFound:
                await self._not_found(exchange, position, attempt.client_order_id, now)
                continue
            if oco.is_open or oco.filled_leg is not None:  # a filled one is booked by this cycle's exit check
                await self.protection.link_all([(trade, position, oco)], now)
                await self.report_repair(position, "re-protected", now, f"linked order list {oco.list_client_order_id}")
                return
            await self.mark_order(attempt.client_order_id, RowStatus.of(oco.list_status), now)
        log.warning("trade %s had no protection: placing it now", trade.id)
        if await self.exits.secure(exchange, trade, now):
            await self.report_repair(position, "re-protected", now, "placed a new order list")


    async def _not_found(self, exchange: ExchangeAdapter, position: PositionRecord, list_id: str,
                         now: datetime) -> None:
        """The exchange says it knows no such list: its legs must agree before the bot places another. A live or
        filled leg means the answer was wrong (ask again next cycle); no leg at all: NOT_FOUND, which every exit
        still checks before it sells (an answer can be wrong twice)."""
        legs = await self.exits.legs_of(exchange, position.symbol, list_id)
        if any(not leg.status.is_final or leg.executed_qty > 0 for leg in legs):
            raise TemporaryExchangeError(f"order list {list_id}: the exchange denies the list but not its legs")
        await self.mark_order(list_id, RowStatus.ALL_DONE if legs else RowStatus.NOT_FOUND, now,
                              None if legs else "not on the exchange")


NOT_FOUND_PATIENCE = timedelta(days=1)  # how long an order the exchange denies is asked about again


def _position_of(trade: TradeRecord) -> PositionRecord:
    return PositionRecord(trade.id, trade.user_id, trade.symbol, trade.amount, trade.price, trade.stop_loss,
                          trade.take_profit, None, trade.executed_at)
