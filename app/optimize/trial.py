"""One trial: a real backtest of a set of settings over a span, through the backtest's own engine and fills."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from app.backtest.command import BacktestOptions, EngineBuilder, build_config, build_settings
from app.backtest.data import plan_span
from app.backtest.report import build_report, daily_equity, daily_returns
from app.backtest.runner import BacktestEngine, BacktestResult, BacktestSpec, run_backtest
from app.backtest.strategy import StrategyOverrides
from app.domain.clock import SimulatedClock
from app.domain.values import ZERO, TradeStatus
from app.engine.bot import CycleSummary
from app.marketdata.candles import CandleStore
from app.optimize.cache import AnalysisCache

OnMonth = Callable[[int, float], None]  # (months done, realised P&L in % of the balance so far); may raise to stop


@dataclass(frozen=True, slots=True)
class TrialBase:
    """What every trial shares: the options, the base --config, the candles (loaded once), the engine builder."""

    options: BacktestOptions
    overrides: Mapping[str, Any]
    candles: CandleStore
    data_dir: Path
    build_engine: EngineBuilder
    cache: AnalysisCache | None = None


@dataclass(frozen=True, slots=True)
class TrialRun:
    result: BacktestResult
    report: dict[str, Any]
    daily_returns: list[float]


def merged(base: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A --config object with `values` over `base`, section by section."""
    out = dict(base)
    for key, value in values.items():
        out[key] = merged(out.get(key) or {}, value) if isinstance(value, Mapping) else value
    return out


def run_settings(base: TrialBase, values: Mapping[str, Any], start: datetime, end: datetime,
                 on_month: OnMonth | None = None) -> TrialRun:
    """Backtest `values` (a --config object over the base one) from start to end."""
    overrides = merged(base.overrides, values)
    options = dataclasses.replace(base.options, workers=0)  # trials run side by side, one process each
    settings = build_settings(options, overrides)
    config = build_config(options, settings, overrides)
    strategy = StrategyOverrides.of(overrides)
    symbols = tuple(config.symbols)
    span = plan_span(base.candles, symbols, start, end)

    def build() -> BacktestEngine:
        return base.build_engine(settings, base.candles, SimulatedClock(span.start), {}, strategy)

    engine = build()
    spec = BacktestSpec(config=config, start=span.start, end=span.end, balance=options.balance)
    analyses = None if base.cache is None else base.cache.analyses(
        build, base.data_dir, settings, strategy, config, symbols, span.start, span.end)
    on_cycle = None if on_month is None else _monthly(engine, spec, on_month)
    result = asyncio.run(run_backtest(engine, spec, on_cycle, analyses))
    report = build_report(result, base.candles)
    return TrialRun(result, report, daily_returns(daily_equity(result.equity)))


def _monthly(engine: BacktestEngine, spec: BacktestSpec, on_month: OnMonth) -> Callable[[datetime, CycleSummary, int], None]:
    """Calls on_month at each new calendar month of the run with the P&L of the trades closed so far."""
    state = {"month": (spec.start.year, spec.start.month), "step": 0}

    def on_cycle(now: datetime, _summary: CycleSummary, _trades: int) -> None:
        month = (now.year, now.month)
        if month == state["month"]:
            return
        state["month"], state["step"] = month, int(state["step"]) + 1  # type: ignore[call-overload]
        realised = sum((t.profit_loss or ZERO for t in engine.store.all_trades() if t.status == TradeStatus.CLOSED),
                       ZERO)
        on_month(int(state["step"]), float(realised / spec.balance * Decimal(100)))  # type: ignore[call-overload]

    return on_cycle
