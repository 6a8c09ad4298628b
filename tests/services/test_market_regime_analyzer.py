"""Regime classification on synthetic trending, ranging and volatile series."""

from __future__ import annotations

import numpy as np

from app.features.regime import MarketRegimeAnalyzer

N = 150
BARS = np.arange(N)
RNG = np.random.default_rng(3)


def classify(close: np.ndarray, spread: float = 0.002, symbol: str = "BTCUSDT"):
    return MarketRegimeAnalyzer().classify_market_regime(close * (1 + spread), close * (1 - spread), close, symbol)


def test_steady_rise_is_trending_up_and_allowed() -> None:
    result = classify(100 * 1.003**BARS)
    assert (result.regime, result.trading_allowed) == ("trending_up", True)
    assert result.adx > 25
    assert "ADX" in result.reason


def test_steady_fall_is_trending_down_and_not_allowed_for_long_only() -> None:
    result = classify(100 * 0.997**BARS)
    assert (result.regime, result.trading_allowed) == ("trending_down", False)
    assert "long-only" in result.reason


def test_oscillation_is_ranging_and_allowed() -> None:
    result = classify(100 + 0.4 * np.sin(BARS / 2.0) + RNG.normal(0, 0.05, N))
    assert (result.regime, result.trading_allowed) == ("ranging", True)
    assert "confluence decides" in result.reason


def test_wild_swings_are_volatile_and_not_allowed() -> None:
    result = classify(100 * np.exp(np.cumsum(RNG.normal(0, 0.03, N))), spread=0.01)
    assert (result.regime, result.trading_allowed) == ("volatile", False)
    assert result.atr_pct > 1.2


def test_volatility_threshold_depends_on_the_asset() -> None:
    # about 1.5 % ATR: too wild for BTC's profile, normal for SOL's
    close = 100 + 0.5 * np.sin(BARS / 2.0) + RNG.normal(0, 0.05, N)
    assert classify(close, spread=0.007, symbol="BTCUSDT").regime == "volatile"
    assert classify(close, spread=0.007, symbol="SOLUSDT").regime == "ranging"


def test_fifteen_minute_spike_flags_volatility() -> None:
    analyzer = MarketRegimeAnalyzer()
    calm = {"adx": 15.0, "atr_pct": 0.5, "bb_width": 2.0}
    assert analyzer.classify_from_indicators(calm, "BTCUSDT").regime == "ranging"
    assert analyzer.classify_from_indicators(calm, "BTCUSDT", confirm={"atr_pct": 1.5}).regime == "volatile"


def test_too_little_data_does_not_allow_trading() -> None:
    result = classify(100 * 1.003 ** BARS[:10])
    assert not result.trading_allowed
    assert "not enough" in result.reason
