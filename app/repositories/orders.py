"""The order journal: every order the bot sends, recorded before it goes out and updated from the exchange."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import Integer, Table, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.records import OrderRecord, Purpose, RowStatus
from app.domain.values import ZERO, Order, OrderType, Side
from app.models import OrderRow


def _order(row: OrderRow) -> OrderRecord:
    return OrderRecord(
        client_order_id=row.client_order_id, user_id=row.user_id, purpose=Purpose(row.purpose), symbol=row.symbol,
        side=Side(row.side), type=OrderType(row.type), quantity=row.quantity, status=RowStatus(row.status),
        trade_id=row.trade_id,
        price=row.price, stop_price=row.stop_price, take_profit=row.take_profit, confidence=row.confidence,
        analysis_id=row.analysis_id, exchange_order_id=row.exchange_order_id,
        executed_qty=row.executed_qty, cumulative_quote_qty=row.cumulative_quote_qty, commission=row.commission,
        commission_asset=row.commission_asset, error=row.error, created_at=row.created_at,
        transact_time=row.transact_time,
    )


def _exchange_state(order: Order) -> dict[str, object]:
    """What an order row records of the exchange's answer."""
    fills = order.fills
    return {
        "status": order.status.value, "exchange_order_id": str(order.order_id), "executed_qty": order.executed_qty,
        "cumulative_quote_qty": order.cumulative_quote_qty, "commission": sum((f.commission for f in fills), ZERO),
        "commission_asset": fills[0].commission_asset if fills else None, "transact_time": order.transact_time,
    }


class OrderRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        # rows this unit of work read or wrote, by client id: its later marks and updates need no SELECT
        self._rows: dict[str, OrderRow] = {}

    async def add(self, order: OrderRecord, now: datetime) -> None:
        values = {k: getattr(order, k) for k in OrderRecord.__dataclass_fields__ if k != "created_at"}
        row = OrderRow(**values, created_at=now, updated_at=now)
        self.session.add(row)
        await self.session.flush()
        self._rows[order.client_order_id] = row

    async def add_many(self, orders: Sequence[OrderRecord], now: datetime) -> None:
        """One INSERT for them all (the rows are not kept in this unit of work: a later mark is one UPDATE)."""
        if orders:
            await self.session.execute(insert(OrderRow), [
                {**{k: getattr(o, k) for k in OrderRecord.__dataclass_fields__ if k != "created_at"},
                 "created_at": now, "updated_at": now}
                for o in orders
            ])

    async def get(self, client_order_id: str) -> OrderRecord | None:
        row = await self._row(client_order_id)
        return _order(row) if row else None

    async def _row(self, client_order_id: str) -> OrderRow | None:
        row = self._rows.get(client_order_id)
        if row is None:
            row = await self.session.scalar(select(OrderRow).where(OrderRow.client_order_id == client_order_id))
            if row is not None:
                self._rows[client_order_id] = row
        return row

    async def record_exchange_state(self, client_order_id: str, order: Order, now: datetime,
                                    trade_id: int | None = None) -> None:
        values: dict[str, object] = {**_exchange_state(order), "updated_at": now}
        if trade_id is not None:
            values["trade_id"] = trade_id
        await self._update(client_order_id, values)

    async def record_exchange_states(self, states: Sequence[tuple[str, Order, int | None]], now: datetime) -> None:
        """Rows this unit of work holds change in place; the others take one UPDATE sent once for them all."""
        held = [s for s in states if s[0] in self._rows]
        for client_order_id, order, trade_id in held:
            await self.record_exchange_state(client_order_id, order, now, trade_id)
        others = [s for s in states if s[0] not in self._rows]
        if not others:
            return
        table = cast(Table, OrderRow.__table__)
        columns = ("status", "exchange_order_id", "executed_qty", "cumulative_quote_qty", "commission",
                   "commission_asset", "transact_time")
        await self.session.execute(
            update(table).where(table.c.client_order_id == bindparam("client_id"))
            .values(updated_at=now, trade_id=func.coalesce(bindparam("trade", type_=Integer), table.c.trade_id),
                    **{name: bindparam(f"new_{name}") for name in columns}),
            [{"client_id": client_order_id, "trade": trade_id,
              **{f"new_{name}": value for name, value in _exchange_state(order).items()}}
             for client_order_id, order, trade_id in others],
        )

    async def mark(self, client_order_id: str, status: RowStatus, now: datetime, error: str | None = None,
                   trade_id: int | None = None) -> None:
        values: dict[str, object] = {"status": status.value, "updated_at": now}
        if error is not None:
            values["error"] = error
        if trade_id is not None:
            values["trade_id"] = trade_id
        await self._update(client_order_id, values)

    async def _update(self, client_order_id: str, values: dict[str, object]) -> None:
        row = self._rows.get(client_order_id)
        if row is not None:  # read or written in this unit of work: changed in place
            for name, value in values.items():
                setattr(row, name, value)
            return
        result = await self.session.execute(  # else one UPDATE, without reading the row first
            update(OrderRow).where(OrderRow.client_order_id == client_order_id).values(**values)
        )
        if not getattr(result, "rowcount", 0):
            raise LookupError(f"no order row for client id {client_order_id}")

    async def mark_many(self, marks: Sequence[tuple[str, RowStatus]], now: datetime) -> None:
        if marks:
            table = cast(Table, OrderRow.__table__)  # Core: an UPDATE sent once for many rows
            await self.session.execute(
                update(table).where(table.c.client_order_id == bindparam("client_id"))
                .values(status=bindparam("new_status"), updated_at=now),
                [{"client_id": client_id, "new_status": status.value} for client_id, status in marks],
            )

    async def for_trade(self, trade_id: int, purpose: str) -> list[OrderRecord]:
        query = select(OrderRow).where(OrderRow.trade_id == trade_id, OrderRow.purpose == purpose)
        return [_order(r) for r in await self.session.scalars(query.order_by(OrderRow.id))]

    async def of_trade(self, trade_id: int) -> list[OrderRecord]:
        """Every order row of a trade (entry, protective lists, exits), in the order they were written."""
        query = select(OrderRow).where(OrderRow.trade_id == trade_id).order_by(OrderRow.id)
        return [_order(r) for r in await self.session.scalars(query)]

    async def unbooked_entries(self) -> list[OrderRecord]:
        """Entries of every user without their trade that may have bought something: sent (or maybe sent) and not
        final without a fill. Reconciliation books or drops each."""
        # money is text on SQLite, so "nothing executed" is decided here, not in SQL; REJECTED rows (the common
        # never-filled entry) are left out in SQL, so the rows read stay few
        query = select(OrderRow).where(OrderRow.purpose == Purpose.ENTRY, OrderRow.trade_id.is_(None),
                                       OrderRow.status != "REJECTED")
        rows = [_order(r) for r in await self.session.scalars(query.order_by(OrderRow.id))]
        return [row for row in rows if row.unbooked_entry]
