"""Trades, exchange orders, open positions and each user's trading config."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, Money, UTCDateTime


class TradingConfigRow(Base):
    __tablename__ = "trading_configs"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=False)
    symbols: Mapped[str] = mapped_column(String(255))
    exclude_symbols: Mapped[str] = mapped_column(String(255), default="", server_default="")
    risk_per_trade_pct: Mapped[Decimal] = mapped_column(Money())
    max_open_positions: Mapped[int] = mapped_column(Integer)
    daily_trade_limit: Mapped[int] = mapped_column(Integer)
    min_signal_confidence: Mapped[int] = mapped_column(Integer)
    max_balance_trade_ratio: Mapped[Decimal] = mapped_column(Money())
    trading_hours_start: Mapped[str | None] = mapped_column(String(5), nullable=True)
    trading_hours_end: Mapped[str | None] = mapped_column(String(5), nullable=True)
    position_timeout_minutes: Mapped[int] = mapped_column(Integer)
    analyzer: Mapped[str] = mapped_column(String(16))
    last_analyzed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Trade(Base):
    __tablename__ = "trades"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    symbol: Mapped[str] = mapped_column(String(20))
    side: Mapped[str] = mapped_column(String(4))
    status: Mapped[str] = mapped_column(String(10), index=True)
    amount: Mapped[Decimal] = mapped_column(Money())
    price: Mapped[Decimal] = mapped_column(Money())
    stop_loss: Mapped[Decimal] = mapped_column(Money())
    take_profit: Mapped[Decimal] = mapped_column(Money())
    ai_signal_confidence: Mapped[int] = mapped_column(Integer)
    entry_client_order_id: Mapped[str] = mapped_column(String(64), unique=True)
    entry_fee: Mapped[Decimal] = mapped_column(Money())
    executed_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    exit_price: Mapped[Decimal | None] = mapped_column(Money(), nullable=True)
    exit_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
    exit_fee: Mapped[Decimal | None] = mapped_column(Money(), nullable=True)
    fees: Mapped[Decimal] = mapped_column(Money())
    profit_loss: Mapped[Decimal | None] = mapped_column(Money(), nullable=True)
    profit_loss_percentage: Mapped[Decimal | None] = mapped_column(Money(), nullable=True)
    duration_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    analysis_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)

    # a user's trades newest first (the API's pages) without sorting them all
    __table_args__ = (Index("ix_trades_user_id_executed_at_id", "user_id", "executed_at", "id"),)


class OrderRow(Base):
    """Every order the bot sends, written with its client id before it goes out."""

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    trade_id: Mapped[int | None] = mapped_column(ForeignKey("trades.id", ondelete="SET NULL"), nullable=True,
                                                 index=True)
    client_order_id: Mapped[str] = mapped_column(String(64), unique=True)
    purpose: Mapped[str] = mapped_column(String(16))  # entry, protect, exit
    symbol: Mapped[str] = mapped_column(String(20))
    side: Mapped[str] = mapped_column(String(4))
    type: Mapped[str] = mapped_column(String(20))
    quantity: Mapped[Decimal] = mapped_column(Money())
    price: Mapped[Decimal | None] = mapped_column(Money(), nullable=True)
    stop_price: Mapped[Decimal | None] = mapped_column(Money(), nullable=True)
    take_profit: Mapped[Decimal | None] = mapped_column(Money(), nullable=True)  # an entry's planned target
    confidence: Mapped[int | None] = mapped_column(Integer, nullable=True)
    analysis_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    status: Mapped[str] = mapped_column(String(20))  # PENDING_SEND, then the exchange's status
    exchange_order_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    executed_qty: Mapped[Decimal] = mapped_column(Money())
    cumulative_quote_qty: Mapped[Decimal] = mapped_column(Money())
    commission: Mapped[Decimal] = mapped_column(Money())
    commission_asset: Mapped[str | None] = mapped_column(String(10), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    transact_time: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)  # the exchange's clock
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OpenPosition(Base):
    __tablename__ = "open_positions"
    __table_args__ = (UniqueConstraint("user_id", "symbol", name="uq_open_positions_user_symbol"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    trade_id: Mapped[int] = mapped_column(ForeignKey("trades.id", ondelete="CASCADE"), unique=True)
    symbol: Mapped[str] = mapped_column(String(20))
    amount: Mapped[Decimal] = mapped_column(Money())
    entry_price: Mapped[Decimal] = mapped_column(Money())
    stop_loss: Mapped[Decimal] = mapped_column(Money())
    take_profit: Mapped[Decimal] = mapped_column(Money())
    oco_order_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    closing_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
