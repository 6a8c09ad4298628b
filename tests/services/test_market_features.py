"""Feature building (with and without the array cache) and the multi-timeframe confluence score."""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from analysis_builders import CYCLE, candles_from_close
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.risk import RiskLimits
from app.domain.values import Timeframe
from app.engine.bot import CANDLES
from app.features.builder import (
    MarketFeatureBuilder,
    RefillRanges,
    SeriesIndicatorRows,
    SeriesZones,
    _Analysed,
    _confluence_of,
    build_market_features,
    calculate_mtf_confluence,
    momentum_agreement,
    trend_alignment,
    trend_strength,
)
from app.features.levels import SupportResistanceDetector, Zone, ZoneLevels
from app.features.regime import MarketRegimeAnalyzer
from app.indicators.batch import batch_latest_indicators
from app.indicators.technical import latest_indicators
from app.marketdata.candles import CandleStore

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "app" / "data" / "sample"

BULL = {"close": 110.0, "ema_9": 108.0, "ema_21": 105.0, "ema_50": 100.0, "rsi": 65.0, "macd_hist": 0.5,
        "adx": 40.0, "plus_di": 30.0, "minus_di": 10.0}
BEAR = {"close": 90.0, "ema_9": 92.0, "ema_21": 95.0, "ema_50": 100.0, "rsi": 35.0, "macd_hist": -0.5,
        "adx": 40.0, "plus_di": 10.0, "minus_di": 30.0}
TIMEFRAMES = ("5m", "15m", "1h")


def test_confluence_bounds() -> None:
    assert calculate_mtf_confluence({}) == 0.0
    assert calculate_mtf_confluence({tf: BEAR for tf in TIMEFRAMES}) == 0.0
    assert calculate_mtf_confluence({tf: BULL for tf in TIMEFRAMES}) == 100.0


def test_confluence_rises_as_each_timeframe_turns_bullish() -> None:
    scores = []
    state = {tf: BEAR for tf in TIMEFRAMES}
    scores.append(calculate_mtf_confluence(state))
    for tf in TIMEFRAMES:
        state = {**state, tf: BULL}
        scores.append(calculate_mtf_confluence(state))
    assert scores == sorted(scores) and len(set(scores)) == 4


def test_one_hour_weighs_most() -> None:
    only_1h = calculate_mtf_confluence({"1h": BULL, "15m": BEAR, "5m": BEAR})
    only_5m = calculate_mtf_confluence({"1h": BEAR, "15m": BEAR, "5m": BULL})
    assert only_1h > only_5m


def test_strong_downtrend_adx_adds_nothing() -> None:
    weak = {**BULL, "adx": 10.0}
    strong_down = {**BULL, "plus_di": 5.0, "minus_di": 40.0}
    assert calculate_mtf_confluence({"1h": weak}) == calculate_mtf_confluence({"1h": strong_down})


indicator_values = st.fixed_dictionaries({
    "close": st.floats(1, 1000), "ema_9": st.floats(1, 1000), "ema_21": st.floats(1, 1000),
    "ema_50": st.floats(1, 1000), "rsi": st.floats(0, 100), "macd_hist": st.floats(-10, 10),
    "adx": st.floats(0, 100), "plus_di": st.floats(0, 100), "minus_di": st.floats(0, 100),
})


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(TIMEFRAMES), indicator_values))
def test_confluence_is_always_between_0_and_100(indicators) -> None:
    assert 0.0 <= calculate_mtf_confluence(indicators) <= 100.0


def plain_factors(ind: dict[str, float]) -> tuple[float | None, float | None, float]:
    """The confluence factors as first written (lists of facts and parts, sum() over len())."""
    trend = None
    if all(k in ind for k in ("close", "ema_9", "ema_21")):
        facts = [ind["ema_9"] > ind["ema_21"], ind["close"] > ind["ema_21"]]
        if "ema_50" in ind:
            facts.append(ind["ema_21"] > ind["ema_50"])
        trend = sum(facts) / len(facts)
    parts = []
    if "rsi" in ind:
        parts.append(min(max((ind["rsi"] - 40.0) / 20.0, 0.0), 1.0))
    if "macd_hist" in ind:
        parts.append(1.0 if ind["macd_hist"] > 0 else 0.0)
    momentum = sum(parts) / len(parts) if parts else None
    if not all(k in ind for k in ("adx", "plus_di", "minus_di")) or ind["plus_di"] <= ind["minus_di"]:
        return trend, momentum, 0.0
    return trend, momentum, min(max((ind["adx"] - 15.0) / 20.0, 0.0), 1.0)


# small whole numbers make equal EMAs, RSI at the clamp edges and +DI = -DI common; numpy floats, NaN and -0.0 too
some_indicators = st.dictionaries(
    st.sampled_from(["close", "ema_9", "ema_21", "ema_50", "rsi", "macd_hist", "adx", "plus_di", "minus_di"]),
    st.one_of(st.integers(-2, 80).map(float), st.floats(-1e3, 1e3), st.sampled_from([-0.0, float("nan")]),
              st.integers(-2, 80).map(np.float64)),
)


def exactly(values: tuple) -> list[str]:
    """Each value's float repr: tells -0.0 from 0.0 and None from 0.0, and NaN equals NaN."""
    return [repr(v if v is None else float(v)) for v in values]


@settings(max_examples=500, deadline=None)
@given(some_indicators)
def test_confluence_factors_are_those_of_the_plain_formulation(ind: dict[str, float]) -> None:
    assert exactly((trend_alignment(ind), momentum_agreement(ind), trend_strength(ind))) == exactly(plain_factors(ind))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(TIMEFRAMES), some_indicators))
def test_the_builders_confluence_is_calculate_mtf_confluence(indicators: dict[str, dict[str, float]]) -> None:
    """The builder always has all three timeframes; one without data has empty indicators (what the function reads
    for a missing one)."""
    analysed = {tf: _Analysed((0, 0, 0), ind, ZoneLevels(()), trend_alignment(ind), momentum_agreement(ind),
                              trend_strength(ind), ())
                for tf in TIMEFRAMES for ind in [indicators.get(tf, {})]}
    assert exactly((_confluence_of(analysed),)) == exactly((calculate_mtf_confluence(indicators),))


def series(n: int, step_ms: int, drift: float, seed: int) -> list:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(drift, 0.003, n)))
    return candles_from_close(close, start_ms=1_700_000_000_000 - n * step_ms, step_ms=step_ms)


def components() -> tuple[MarketRegimeAnalyzer, SupportResistanceDetector]:
    return MarketRegimeAnalyzer(), SupportResistanceDetector(RiskLimits().sr_touch_threshold_pct)


def test_build_market_features_fills_every_part() -> None:
    c5, c15, c1h = series(288, 300_000, 0.0002, 1), series(100, 900_000, 0.0004, 2), series(168, 3_600_000, 0.001, 3)
    features = build_market_features("BTCUSDT", CYCLE, c5, c15, c1h, *components())
    assert features.last_price == c5[-1].close
    assert set(features.indicators) == {"5m", "15m", "1h"}
    assert {"rsi", "macd_hist", "adx", "atr", "ema_200", "bb_pct_b", "stoch_k", "obv"} <= set(features.indicators["5m"])
    assert "ema_200" not in features.indicators["15m"]  # only 100 candles
    assert features.regime.regime in {"trending_up", "trending_down", "ranging", "volatile"}
    assert 0 <= features.confluence <= 100
    assert {tf: len(c) for tf, c in features.recent.items()} == {"5m": 5, "15m": 5, "1h": 5}
    assert features.levels and all((lv.kind == "support") == (lv.price < float(features.last_price))
                                   for lv in features.levels)


def test_cached_builder_matches_fresh_builds_on_sliding_and_jumping_windows() -> None:
    c5 = series(400, 300_000, 0.0, 4)
    c15, c1h = series(140, 900_000, 0.0, 5), series(168, 3_600_000, 0.0, 6)
    builder = MarketFeatureBuilder(*components())
    for end in [288, 289, 290, 300, 300, 350, 295, 400]:
        window, window_15m = c5[end - 288 : end], c15[end // 10 : end // 10 + 100]
        cached = builder.build("ETHUSDT", CYCLE, window, window_15m, c1h)
        fresh = build_market_features("ETHUSDT", CYCLE, window, window_15m, c1h, *components())
        assert cached == fresh
        cached.indicators["5m"].clear()  # a caller mutating its copy must not touch the cache


def test_empty_candles_give_empty_but_valid_features() -> None:
    features = build_market_features("BTCUSDT", CYCLE, [], [], [], *components())
    assert features.last_price == Decimal("0")
    assert features.indicators == {"5m": {}, "15m": {}, "1h": {}}
    assert not features.regime.trading_allowed
    assert features.levels == ()
    assert features.confluence == 0.0


def test_store_windows_give_exactly_the_features_klines_give() -> None:
    """The backtest's path (windows of the candle store, indicators computed for many windows at once) against the
    live path (plain candle lists as Binance klines arrive, TA-Lib per window): every cycle identical, bit for bit."""
    store = CandleStore.load(SAMPLE_DIR, ["SOLUSDT"], datetime(2025, 10, 1, tzinfo=UTC), datetime(2025, 10, 12, tzinfo=UTC))
    batched = MarketFeatureBuilder(*components(), batch_indicators=True)
    per_window = MarketFeatureBuilder(*components())
    now = datetime(2025, 10, 9, tzinfo=UTC)
    for _ in range(600):  # two days, crossing 15m and 1h boundaries
        windows = {tf: store.closed_window("SOLUSDT", tf, now, limit) for tf, limit in CANDLES.items()}
        lists = {tf: list(w) for tf, w in windows.items()}
        fast = batched.build("SOLUSDT", now, windows[Timeframe.M5], windows[Timeframe.M15], windows[Timeframe.H1])
        slow = per_window.build("SOLUSDT", now, lists[Timeframe.M5], lists[Timeframe.M15], lists[Timeframe.H1])
        assert fast == slow
        assert {tf: [struct.pack("<d", v) for v in d.values()] for tf, d in fast.indicators.items()} == \
               {tf: [struct.pack("<d", v) for v in d.values()] for tf, d in slow.indicators.items()}
        now += timedelta(minutes=5)


def test_batched_indicators_that_differ_from_talib_are_switched_off() -> None:
    """A TA-Lib build whose arithmetic the batch replay does not match must not change a single number."""
    store = CandleStore.load(SAMPLE_DIR, ["BTCUSDT"], datetime(2025, 10, 1, tzinfo=UTC), datetime(2025, 10, 5, tzinfo=UTC))

    def off_by_a_bit(*args: object, **kwargs: object) -> np.ndarray:
        return np.nextafter(batch_latest_indicators(*args, **kwargs), np.inf)

    rows = SeriesIndicatorRows(batch=off_by_a_bit)
    now = datetime(2025, 10, 4, tzinfo=UTC)
    for _ in range(3):
        window = store.closed_window("BTCUSDT", Timeframe.M5, now, 288)
        assert rows.latest("BTCUSDT", "5m", window) == latest_indicators(*(np.array([float(getattr(c, f)) for c in window])
                                                                        for f in ("open", "high", "low", "close", "volume")))
        now += timedelta(minutes=5)
    assert not rows.batched


def test_batched_zones_that_differ_from_the_window_path_are_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    store = CandleStore.load(SAMPLE_DIR, ["BTCUSDT"], datetime(2025, 10, 1, tzinfo=UTC), datetime(2025, 10, 5, tzinfo=UTC))
    risk = SupportResistanceDetector(RiskLimits().sr_touch_threshold_pct)
    honest = risk.support_resistance_zone_windows

    def one_touch_more(*args: object) -> list[tuple[Zone, ...]] | None:
        batch = honest(*args)  # type: ignore[arg-type]
        return None if batch is None else [tuple((p, t + 1, s) for p, t, s in zones) for zones in batch]

    monkeypatch.setattr(risk, "support_resistance_zone_windows", one_touch_more)
    zones = SeriesZones(risk)
    now = datetime(2025, 10, 4, tzinfo=UTC)
    for _ in range(3):
        window = store.closed_window("BTCUSDT", Timeframe.M15, now, 100)
        highs, lows = (np.array([float(getattr(c, f)) for c in window]) for f in ("high", "low"))
        assert zones.zones("BTCUSDT", "15m", window) == risk.support_resistance_zones(highs, lows)
        now += timedelta(minutes=15)
    assert not zones.batched


def test_a_planned_horizon_bounds_every_refill_to_its_windows_and_a_small_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker computing one block of cycles batches no windows past its block (bar a small floor): the next block
    may go to another worker, which would compute them again."""
    store = CandleStore.load(SAMPLE_DIR, ["BTCUSDT"], datetime(2025, 10, 1, tzinfo=UTC), datetime(2025, 11, 1, tzinfo=UTC))
    computed: dict[str, list[int]] = {}

    def counted(kind: str, compute: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            computed.setdefault(kind, []).append(len(args[-2]))  # ends (rows) or starts (zones): one per window
            return compute(*args)
        return call

    builder = MarketFeatureBuilder(*components(), batch_indicators=True)
    rows, zones = builder._rows, builder._zones
    assert rows is not None and zones is not None
    monkeypatch.setattr(rows, "_batch", counted("rows", rows._batch))
    risk = builder.levels
    monkeypatch.setattr(risk, "support_resistance_zone_windows", counted("zones", risk.support_resistance_zone_windows))
    start = datetime(2025, 10, 10, tzinfo=UTC)
    horizon = start + timedelta(hours=10)  # 120 cycles: 120 5m windows, 40 of 15m, 10 of 1h
    builder.plan_until(horizon)
    now = start
    while now <= horizon:
        windows = [store.closed_window("BTCUSDT", tf, now, limit) for tf, limit in CANDLES.items()]
        builder.build("BTCUSDT", now, *windows)
        now += timedelta(minutes=5)
    floor = RefillRanges.HORIZON_FLOOR
    assert len(computed["rows"]) == 3 and all(n <= floor for n in computed["rows"])  # one refill per timeframe
    assert computed["zones"] == [floor]
    builder.plan_until(None)  # no horizon: the usual growing batches
    now += timedelta(days=2)
    windows = [store.closed_window("BTCUSDT", tf, now, limit) for tf, limit in CANDLES.items()]
    builder.build("BTCUSDT", now, *windows)
    assert computed["rows"][-1] > floor
