"""Shared set-up for the backtest tests: run a span of the bundled sample through the backtest engine."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

from app.assembly import build_backtest_engine
from app.backtest.data import load_candles, plan_span
from app.backtest.runner import BacktestEngine, BacktestResult, BacktestSpec, run_backtest
from app.config import BUNDLED_DATA_DIR, Settings
from app.domain.clock import SimulatedClock
from app.domain.records import TradeRecord
from app.domain.risk import TradingConfig

SAMPLE = BUNDLED_DATA_DIR


def trade_facts(trades: list[TradeRecord]) -> list[tuple[object, ...]]:
    """Everything a trade's outcome consists of (ids and bookkeeping-only fields left out)."""
    return [
        (t.symbol, t.executed_at, t.amount, t.price, t.stop_loss, t.take_profit, t.ai_signal_confidence, t.entry_fee,
         t.closed_at, t.exit_price, t.exit_reason, t.exit_fee, t.fees, t.profit_loss, t.profit_loss_percentage)
        for t in sorted(trades, key=lambda t: (t.executed_at, t.symbol))
    ]


def backtest_engine(settings: Settings, symbols: tuple[str, ...], start: datetime, end: datetime,
                    data: Path = SAMPLE, keep_log: bool = False) -> tuple[BacktestEngine, BacktestSpec]:
    candles = load_candles(data, symbols, start, end)
    span = plan_span(candles, symbols, start, end)
    engine = build_backtest_engine(settings, candles, SimulatedClock(span.start))
    engine.store.tables.keep_analyses = keep_log
    config = TradingConfig(
        user_id=1, is_active=True, symbols=symbols, risk_per_trade_pct=settings.risk_per_trade_pct,
        max_open_positions=settings.max_open_positions, daily_trade_limit=settings.daily_trade_limit,
        min_signal_confidence=settings.min_signal_confidence,
        max_balance_trade_ratio=settings.max_balance_trade_ratio,
        position_timeout_minutes=settings.position_timeout_minutes,
    )
    return engine, BacktestSpec(config=config, start=span.start, end=span.end, balance=settings.paper_start_balance)


async def run_span(settings: Settings, symbols: tuple[str, ...], start: datetime, end: datetime,
                   data: Path = SAMPLE, keep_log: bool = False) -> tuple[BacktestEngine, BacktestResult]:
    engine, spec = backtest_engine(settings, symbols, start, end, data, keep_log)
    return engine, await run_backtest(engine, spec)


def fast_settings(**overrides: object) -> Settings:
    """Settings for an in-memory backtest (no database is opened)."""
    values: dict[str, object] = {"jwt_secret": "test-secret-not-for-production-0123456789", **overrides}
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


ZERO_BALANCE = Decimal(0)
