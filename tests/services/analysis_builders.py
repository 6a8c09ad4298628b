"""Builders for features, contexts and synthetic candles shared by the analysis service tests."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import numpy as np

from app.domain.risk import TradingConfig, UserRiskContext
from app.domain.values import Candle, MarketFeatures, RegimeAnalysis, Signal, SignalType, SupportResistance, SymbolRules

CYCLE = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def make_rules(symbol: str = "XYZUSDT", **overrides: object) -> SymbolRules:
    values: dict[str, object] = dict(
        symbol=symbol, base_asset=symbol[:-4], quote_asset="USDT", tick_size=Decimal("0.01"),
        step_size=Decimal("0.001"), min_qty=Decimal("0.001"), max_qty=Decimal("10000"), min_notional=Decimal("5"),
    )
    values.update(overrides)
    return SymbolRules(**values)  # type: ignore[arg-type]


def make_features(
    symbol: str = "XYZUSDT", price: str = "100", regime: str = "trending_up", allowed: bool = True,
    levels: tuple[SupportResistance, ...] | None = None, atr: float = 0.2, confluence: float = 80.0,
    indicators: dict[str, dict[str, float]] | None = None, adx: float = 30.0,
) -> MarketFeatures:
    if levels is None:
        levels = (SupportResistance(99.0, "support", 3, 0.8), SupportResistance(103.0, "resistance", 2, 0.6))
    if indicators is None:
        indicators = {"15m": {"atr": atr, "rsi": 58.0, "macd_hist": 0.1, "ema_21": float(price) * 0.99}}
    return MarketFeatures(
        symbol=symbol, time=CYCLE, last_price=Decimal(price), indicators=indicators,
        regime=RegimeAnalysis(regime, allowed, f"{regime} for the test", adx, 0.5), levels=levels,
        confluence=confluence,
    )


def make_context(**overrides: object) -> UserRiskContext:
    values: dict[str, object] = dict(
        user_id=7, config=TradingConfig(user_id=7), usdt_balance=Decimal("10000"), open_symbols=(),
        entries_today=0, recent_results=(), rules=make_rules(), cycle_time=CYCLE,
    )
    values.update(overrides)
    return UserRiskContext(**values)  # type: ignore[arg-type]


def buy(confidence: int = 90) -> Signal:
    return Signal(SignalType.BUY, confidence, Decimal("100"), Decimal("99"), Decimal("103"), "test")


def candles_from_close(close: np.ndarray, spread: float = 0.001, start_ms: int = 0, step_ms: int = 900_000,
                       ) -> list[Candle]:
    """Candles whose high/low sit `spread` (fraction) around a close path; open is the previous close."""
    out = []
    previous = float(close[0])
    for i, c in enumerate(close.tolist()):
        high, low = max(c, previous) * (1 + spread), min(c, previous) * (1 - spread)
        out.append(Candle(start_ms + i * step_ms, Decimal(f"{previous:.4f}"), Decimal(f"{high:.4f}"),
                          Decimal(f"{low:.4f}"), Decimal(f"{c:.4f}"), Decimal("10")))
        previous = c
    return out
