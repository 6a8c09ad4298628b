"""Per-user portfolio statistics kept up to date as trades close."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, Money, UTCDateTime


class Portfolio(Base):
    __tablename__ = "portfolios"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    start_balance: Mapped[Decimal] = mapped_column(Money())
    total_trades: Mapped[int] = mapped_column(Integer, default=0)
    winning_trades: Mapped[int] = mapped_column(Integer, default=0)
    losing_trades: Mapped[int] = mapped_column(Integer, default=0)
    total_realized_pnl: Mapped[Decimal] = mapped_column(Money())
    total_fees: Mapped[Decimal] = mapped_column(Money())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DustBalance(Base):
    """Base asset the bot bought but could not sell (below the step size), carried into the next exit."""

    __tablename__ = "dust_balances"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(20), primary_key=True)
    amount: Mapped[Decimal] = mapped_column(Money())
    cost: Mapped[Decimal] = mapped_column(Money(), default=Decimal(0), server_default="0")  # what the books charged
