"""The deterministic analyst: buys only confirmed setups and never raises."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal

import numpy as np
from analysis_builders import CYCLE, candles_from_close, make_features

from app.analysts.rule_confidence import ConfidenceScale, SetupKind
from app.analysts.rules import RuleBasedAnalyzer, Setup
from app.domain.risk import RiskLimits
from app.domain.values import MarketFeatures, RegimeAnalysis, SignalType, SupportResistance
from app.features.builder import build_market_features
from app.features.levels import SupportResistanceDetector
from app.features.regime import MarketRegimeAnalyzer

ANALYZER = RuleBasedAnalyzer()


def analyze(features: MarketFeatures):
    return asyncio.run(ANALYZER.analyze(features))


def trend_features(**changes) -> MarketFeatures:
    features = make_features(confluence=80.0, adx=32.0)
    return replace(features, **changes)


def test_name_is_rules() -> None:
    assert ANALYZER.name == "rules"


def test_confirmed_uptrend_buys_with_sane_levels() -> None:
    signal = analyze(trend_features())
    assert signal.signal == SignalType.BUY
    assert signal.stop_loss < signal.entry_price == Decimal("100") < signal.take_profit
    assert 50 <= signal.confidence <= 95
    assert "trend long" in signal.reasoning


def test_confidence_grows_with_confluence() -> None:
    low, high = analyze(trend_features(confluence=62.0)), analyze(trend_features(confluence=95.0))
    assert low.signal == high.signal == SignalType.BUY
    assert high.confidence > low.confidence


def test_confidence_is_the_setups_rank_on_the_injected_scale() -> None:
    scale = ConfidenceScale("test", {SetupKind.TREND: (73.5, 93.5), SetupKind.RANGE: (70.0, 80.0)})
    features = trend_features()  # score 50 + 0.35 x 80 + (32 - 25) x 0.5 = 81.5: 40 % of the way from 73.5 to 93.5
    assert RuleBasedAnalyzer(scale=scale).setup_of(features) == Setup(SetupKind.TREND, 81.5)
    signal = RuleBasedAnalyzer(scale=scale).decide(features)
    assert signal.confidence == 50 + 0.4 * 45
    assert "score 81.5 beats 40% of the calibration's trend setups" in signal.reasoning


def test_range_setups_have_their_own_scale() -> None:
    scale = ConfidenceScale("test", {SetupKind.TREND: (0.0, 1.0), SetupKind.RANGE: (70.0, 80.0)})
    ranging = RegimeAnalysis("ranging", True, "ranging", 18.0, 0.5)
    features = trend_features(regime=ranging, confluence=80.0)  # 45 + 0.3 x 80 + 10 x 0.8 (the support) = 77
    assert RuleBasedAnalyzer(scale=scale).setup_of(features) == Setup(SetupKind.RANGE, 77.0)
    assert RuleBasedAnalyzer(scale=scale).decide(features).confidence == round(50 + 0.7 * 45)


def test_shipped_calibration_gives_the_weakest_setups_50_and_the_strongest_95() -> None:
    weakest = analyze(make_features(confluence=60.0, adx=25.1))
    strongest = analyze(make_features(confluence=100.0, adx=50.0))
    assert (weakest.confidence, strongest.confidence) == (50, 95)
    ranging = RegimeAnalysis("ranging", True, "ranging", 18.0, 0.5)
    strong_support = (SupportResistance(99.5, "support", 9, 1.0), SupportResistance(103.0, "resistance", 2, 0.6))
    weak = analyze(trend_features(regime=ranging, confluence=75.0, levels=(SupportResistance(99.5, "support", 1, 0.0),)))
    strong = analyze(trend_features(regime=ranging, confluence=100.0, levels=strong_support))
    assert (weak.confidence, strong.confidence) == (50, 95)


def test_no_setup_no_score() -> None:
    assert ANALYZER.setup_of(trend_features(confluence=40.0)) is None


def test_weak_confluence_in_uptrend_holds_with_reason() -> None:
    signal = analyze(trend_features(confluence=40.0))
    assert signal.signal == SignalType.HOLD
    assert "confluence 40.0 below 60" in signal.reasoning


def test_overbought_rsi_holds() -> None:
    hot = {"15m": {"atr": 0.2, "rsi": 80.0, "macd_hist": 0.1, "ema_21": 99.0}}
    signal = analyze(trend_features(indicators=hot))
    assert signal.signal == SignalType.HOLD
    assert "RSI 80.0 outside 45-70" in signal.reasoning


def test_forbidden_regimes_hold() -> None:
    for regime in ("volatile", "trending_down"):
        features = trend_features(regime=RegimeAnalysis(regime, False, "because", 30.0, 2.0))
        signal = analyze(features)
        assert signal.signal == SignalType.HOLD
        assert regime in signal.reasoning


def test_ranging_needs_high_confluence_and_nearby_support() -> None:
    ranging = RegimeAnalysis("ranging", True, "ranging", 18.0, 0.5)
    assert analyze(trend_features(regime=ranging, confluence=80.0)).signal == SignalType.BUY
    assert analyze(trend_features(regime=ranging, confluence=70.0)).signal == SignalType.HOLD
    far = analyze(trend_features(regime=ranging, confluence=80.0, levels=()))
    assert far.signal == SignalType.HOLD
    assert "no support" in far.reasoning


def test_garbage_features_hold_instead_of_raising() -> None:
    broken = [
        make_features(indicators={}),
        make_features(indicators={"15m": {"rsi": float("nan")}}),
        make_features(price="0"),
        replace(make_features(), indicators=None),  # type: ignore[arg-type]
        replace(make_features(), regime=None),  # type: ignore[arg-type]
        replace(make_features(), levels=(None,)),  # type: ignore[arg-type]
    ]
    for features in broken:
        signal = analyze(features)
        assert signal.signal == SignalType.HOLD
        assert signal.reasoning


def test_same_features_same_signal() -> None:
    rng = np.random.default_rng(9)
    make = lambda n, step: candles_from_close(100 * np.exp(np.cumsum(rng.normal(0.0005, 0.004, n))),  # noqa: E731
                                              step_ms=step)
    parts = make(288, 300_000), make(100, 900_000), make(168, 3_600_000)
    features = build_market_features("SOLUSDT", CYCLE, *parts, MarketRegimeAnalyzer(),
                                     SupportResistanceDetector(RiskLimits().sr_touch_threshold_pct))
    assert analyze(features) == analyze(features)
