"""The decision log: one analysis per symbol per cycle, what it meant for the users it moved (a row each), how
often each outcome met it (tallies), and the spans of cycles in which users saw the holds."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, Money, UTCDateTime


class Analysis(Base):
    __tablename__ = "analyses"

    id: Mapped[int] = mapped_column(primary_key=True)
    symbol: Mapped[str] = mapped_column(String(20), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    analyzer: Mapped[str] = mapped_column(String(16))
    signal: Mapped[str] = mapped_column(String(8))
    confidence: Mapped[int] = mapped_column(Integer)
    entry_price: Mapped[Decimal | None] = mapped_column(Money(), nullable=True)
    stop_loss: Mapped[Decimal | None] = mapped_column(Money(), nullable=True)
    take_profit: Mapped[Decimal | None] = mapped_column(Money(), nullable=True)
    reasoning: Mapped[str] = mapped_column(Text)
    regime: Mapped[str] = mapped_column(String(20))
    confluence_score: Mapped[Decimal] = mapped_column(Money())
    last_price: Mapped[Decimal] = mapped_column(Money())
    model: Mapped[str | None] = mapped_column(String(64), nullable=True)
    prompt: Mapped[str | None] = mapped_column(Text, nullable=True)
    prompt_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    prompt_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    raw_response: Mapped[str | None] = mapped_column(Text, nullable=True)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[Decimal] = mapped_column(Money())
    fallback_used: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class AnalysisDecision(Base):
    __tablename__ = "analysis_decisions"

    id: Mapped[int] = mapped_column(primary_key=True)
    analysis_id: Mapped[int] = mapped_column(ForeignKey("analyses.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    decision: Mapped[str] = mapped_column(String(10))
    reasons: Mapped[str] = mapped_column(Text)  # JSON list of strings
    trade_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class DecisionTally(Base):
    """How many times one outcome (a decision and a reason's code) met an analysis in its cycle, over every user:
    the cycle's summary per symbol, a few rows where each user's decision used to be a row. A table of its own
    rather than a column of the analysis: rows are only added (batches of users decided apart, by the engine now
    and by workers later, each add theirs without rewriting the analysis), and they go with it (ON DELETE CASCADE)."""

    __tablename__ = "decision_tallies"

    id: Mapped[int] = mapped_column(primary_key=True)
    analysis_id: Mapped[int] = mapped_column(ForeignKey("analyses.id", ondelete="CASCADE"), index=True)
    decision: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(String(64))
    count: Mapped[int] = mapped_column(Integer)


class DecisionSpan(Base):
    """Consecutive cycles in which a user was decided on the same terms (analyst, resolved symbols, trading hours):
    the analyses for those terms inside it without a row of the user's are the skips they saw. An open span (no
    last_at) ends with the user's last_analyzed_at, so going on writes nothing; it is closed when the terms change or
    a cycle passes the user by."""

    __tablename__ = "decision_spans"
    __table_args__ = (Index("ix_decision_spans_user_id_last_at", "user_id", "last_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    analyzer: Mapped[str] = mapped_column(String(16))
    symbols: Mapped[str] = mapped_column(Text)  # ",BTCUSDT,ETHUSDT,": a symbol matches as ",SYMBOL,"
    hours_start: Mapped[str | None] = mapped_column(String(5), nullable=True)
    hours_end: Mapped[str | None] = mapped_column(String(5), nullable=True)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True, index=True)


class EngineCycle(Base):
    """A cycle the leader handed to `trdbot worker` processes (ENGINE_DECIDE_ON=workers): what every batch of it is
    decided on, published once (the users' resolved configs, the cycle's analyses with their features, the entries
    in doubt, the previous cycle), pickled: only the service's own processes write and read it, on the database they
    already trust with everything else. Pruned with the analyses."""

    __tablename__ = "engine_cycles"

    cycle_at: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
