"""Backtests users started through the API: what they asked for, where the run stands, its headline figures."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, Money, UTCDateTime


class BacktestRow(Base):
    __tablename__ = "backtests"
    __table_args__ = (Index("ix_backtests_status_id", "status", "id"),)  # the runner's "oldest queued"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(10))  # queued, running, done, failed
    symbols: Mapped[str] = mapped_column(String(255))  # comma-separated
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    end: Mapped[datetime] = mapped_column(UTCDateTime())
    balance: Mapped[Decimal] = mapped_column(Money())
    config: Mapped[str] = mapped_column(Text)  # JSON object of trading-config fields
    progress: Mapped[float] = mapped_column(Float, default=0.0)  # 0-1: not money, a progress bar's fraction
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    summary: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON: report.json's headline figures
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
