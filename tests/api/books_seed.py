"""Trades written straight into the books, for the routes that report on them."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from app.container import Container
from app.domain.records import PositionRecord, TradeRecord
from app.domain.values import ExitReason, TradeStatus


async def closed_trade(container: Container, user_id: int, symbol: str, closed_at: datetime, profit: str,
                       reason: ExitReason, duration_s: int, analysis_id: int | None = None) -> int:
    executed_at = closed_at - timedelta(seconds=duration_s)
    async with container.uow() as uow:
        trade = await uow.trades.add(TradeRecord(
            id=0, user_id=user_id, symbol=symbol, side="BUY", status=TradeStatus.CLOSED, amount=Decimal("0.01"),
            price=Decimal("1000"), stop_loss=Decimal("990"), take_profit=Decimal("1020"), ai_signal_confidence=70,
            entry_client_order_id=f"e-{user_id}-{symbol}-{closed_at.timestamp()}", entry_fee=Decimal("0.01"),
            executed_at=executed_at, fees=Decimal("0.02"), exit_price=Decimal("1000") + Decimal(profit) * 100,
            exit_reason=reason, exit_fee=Decimal("0.01"), profit_loss=Decimal(profit),
            profit_loss_percentage=Decimal(profit), duration_seconds=duration_s, closed_at=closed_at,
            analysis_id=analysis_id,
        ))
        await uow.commit()
        return trade.id


async def open_position(container: Container, user_id: int, symbol: str, amount: str, entry: str,
                        opened_at: datetime) -> int:
    async with container.uow() as uow:
        trade = await uow.trades.add(TradeRecord(
            id=0, user_id=user_id, symbol=symbol, side="BUY", status=TradeStatus.FILLED, amount=Decimal(amount),
            price=Decimal(entry), stop_loss=Decimal(entry) * Decimal("0.99"),
            take_profit=Decimal(entry) * Decimal("1.02"), ai_signal_confidence=70,
            entry_client_order_id=f"open-{user_id}-{symbol}", entry_fee=Decimal("0.01"), executed_at=opened_at,
            fees=Decimal("0.01"),
        ))
        await uow.positions.add(PositionRecord(trade.id, user_id, symbol, Decimal(amount), Decimal(entry),
                                               trade.stop_loss, trade.take_profit, "oco-1", opened_at, None))
        await uow.commit()
        return trade.id
