"""Per-symbol market features for one cycle: indicators per timeframe, regime, S/R levels and confluence."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal

import numpy as np

from app.domain.values import ZERO, Candle, MarketFeatures
from app.indicators.technical import latest_indicators
from app.services.market_data import CandleWindow
from app.services.market_regime_analyzer import MarketRegimeAnalyzer
from app.services.risk_manager import RiskManager, Zone
from app.services.service_constants import (
    CONFLUENCE_MOMENTUM_WEIGHT,
    CONFLUENCE_STRENGTH_WEIGHT,
    CONFLUENCE_TREND_WEIGHT,
    TIMEFRAME_WEIGHTS,
)

RECENT_CANDLES = 5
SR_TIMEFRAME = "15m"
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class CandleArrayCache:
    """Float arrays of each (symbol, timeframe) window, converting only candles the previous window lacked.

    Decimal -> float costs about 0.1 us per number, which for 556 candles x 5 fields is most of a cycle's budget;
    consecutive cycles share all but a candle or two. Closed candles never change, so the open time identifies one.
    """

    def __init__(self) -> None:
        self._windows: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}

    def arrays(self, symbol: str, timeframe: str, candles: Sequence[Candle]) -> Arrays:
        key = (symbol, timeframe)
        times, data = self._merge(self._windows.get(key), candles)
        self._windows[key] = (times, data)
        return data[0], data[1], data[2], data[3], data[4]

    @staticmethod
    def _reusable(previous: tuple[np.ndarray, np.ndarray] | None, candles: Sequence[Candle]) -> tuple[int, int]:
        """(start in the previous window, how many of its candles open the new one)."""
        if previous is None or not candles:
            return 0, 0
        times = previous[0]
        start = int(np.searchsorted(times, candles[0].open_time_ms))
        if start >= len(times) or times[start] != candles[0].open_time_ms:
            return 0, 0
        count = min(len(times) - start, len(candles))
        if candles[count - 1].open_time_ms != times[start + count - 1]:
            return 0, 0
        return start, count

    def _merge(
        self, previous: tuple[np.ndarray, np.ndarray] | None, candles: Sequence[Candle]
    ) -> tuple[np.ndarray, np.ndarray]:
        start, count = self._reusable(previous, candles)
        fresh = candles[count:]
        new_times = np.fromiter((c.open_time_ms for c in fresh), dtype=np.int64, count=len(fresh))
        new_data = np.array(
            [(float(c.open), float(c.high), float(c.low), float(c.close), float(c.volume)) for c in fresh],
            dtype=np.float64,
        ).reshape(len(fresh), 5).T
        if previous is None or count == 0:
            return new_times, np.ascontiguousarray(new_data)
        times = np.concatenate((previous[0][start : start + count], new_times))
        data = np.concatenate((previous[1][:, start : start + count], new_data), axis=1)
        return times, np.ascontiguousarray(data)


def _last_price(*series: Sequence[Candle]) -> Decimal:
    for candles in series:
        if candles:
            return candles[-1].close
    return ZERO


def window_key(candles: Sequence[Candle]) -> tuple[int, int, int]:
    """Identifies a window of closed candles: its length and first and last open times."""
    if not candles:
        return (0, 0, 0)
    return (len(candles), candles[0].open_time_ms, candles[-1].open_time_ms)


class MarketFeatureBuilder:
    """Builds MarketFeatures; keep one per engine so its caches carry over between cycles.

    Indicators and S/R zones are pure functions of a window of closed candles, so a window seen in the
    previous cycle (the 1h one for 11 cycles in 12, the 15m one for 2 in 3) is not computed again.
    """

    def __init__(self, regime_analyzer: MarketRegimeAnalyzer, risk_manager: RiskManager) -> None:
        self._regime = regime_analyzer
        self._risk = risk_manager
        self._cache = CandleArrayCache()
        self._memo: dict[tuple[str, str], tuple[tuple[int, int, int], dict[str, float], tuple[Zone, ...]]] = {}

    def build(
        self, symbol: str, now: datetime, candles_5m: Sequence[Candle], candles_15m: Sequence[Candle],
        candles_1h: Sequence[Candle],
    ) -> MarketFeatures:
        """Regime from 1h (the 15m ATR can flag a fresh volatility spike), S/R from the 15m swings,
        entry price = the last 5m close."""
        by_tf = {"5m": candles_5m, "15m": candles_15m, "1h": candles_1h}
        analysed = {tf: self._analyse(symbol, tf, candles) for tf, candles in by_tf.items()}
        indicators = {tf: dict(values) for tf, (values, _) in analysed.items()}  # copies: the memo stays intact
        last_price = _last_price(candles_5m, candles_15m, candles_1h)
        regime = self._regime.classify_from_indicators(indicators["1h"], symbol=symbol, confirm=indicators["15m"])
        return MarketFeatures(
            symbol=symbol, time=now, last_price=last_price, indicators=indicators, regime=regime,
            levels=self._risk.levels_around(analysed["15m"][1], float(last_price)),
            confluence=calculate_mtf_confluence(indicators),
            recent={tf: tuple(candles[-RECENT_CANDLES:]) for tf, candles in by_tf.items()},
        )

    def _analyse(self, symbol: str, tf: str, candles: Sequence[Candle]) -> tuple[dict[str, float], tuple[Zone, ...]]:
        window = candles if isinstance(candles, CandleWindow) else None
        key = window.key() if window is not None else window_key(candles)
        hit = self._memo.get((symbol, tf))
        if hit is not None and hit[0] == key:
            return hit[1], hit[2]
        arrays = self._arrays(symbol, tf, candles, window)
        high, low = arrays[1], arrays[2]
        values = latest_indicators(*arrays)
        zones = self._risk.support_resistance_zones(high, low) if tf == SR_TIMEFRAME else ()
        self._memo[(symbol, tf)] = (key, values, zones)
        return values, zones

    def _arrays(self, symbol: str, tf: str, candles: Sequence[Candle], window: CandleWindow | None) -> Arrays:
        """A simulated exchange's window already holds its float columns (the same numbers the cache would
        convert); klines from Binance are converted, reusing the previous window's columns."""
        if window is None:
            return self._cache.arrays(symbol, tf, candles)
        columns = window.float_arrays()
        return columns.open, columns.high, columns.low, columns.close, columns.volume


def build_market_features(
    symbol: str, now: datetime, candles_5m: Sequence[Candle], candles_15m: Sequence[Candle],
    candles_1h: Sequence[Candle], regime_analyzer: MarketRegimeAnalyzer, risk_manager: RiskManager,
) -> MarketFeatures:
    """One-off features (no cache between calls); a loop should keep a MarketFeatureBuilder instead."""
    return MarketFeatureBuilder(regime_analyzer, risk_manager).build(symbol, now, candles_5m, candles_15m, candles_1h)


# ---- confluence -----------------------------------------------------------------------------------------------


def _clamp01(value: float) -> float:
    return min(max(value, 0.0), 1.0)


def trend_alignment(ind: Mapping[str, float]) -> float | None:
    """Share of bullish EMA facts on one timeframe: EMA9 > EMA21, close > EMA21, EMA21 > EMA50."""
    if not all(k in ind for k in ("close", "ema_9", "ema_21")):
        return None
    facts = [ind["ema_9"] > ind["ema_21"], ind["close"] > ind["ema_21"]]
    if "ema_50" in ind:
        facts.append(ind["ema_21"] > ind["ema_50"])
    return sum(facts) / len(facts)


def momentum_agreement(ind: Mapping[str, float]) -> float | None:
    """Bullish momentum on one timeframe: RSI scaled from 40 (0) to 60 (1), and MACD histogram above zero."""
    parts = []
    if "rsi" in ind:
        parts.append(_clamp01((ind["rsi"] - 40.0) / 20.0))
    if "macd_hist" in ind:
        parts.append(1.0 if ind["macd_hist"] > 0 else 0.0)
    return sum(parts) / len(parts) if parts else None


def trend_strength(ind: Mapping[str, float]) -> float:
    """1h ADX scaled from 15 (0) to 35 (1), counted only when +DI leads (a strong downtrend is no help)."""
    if not all(k in ind for k in ("adx", "plus_di", "minus_di")) or ind["plus_di"] <= ind["minus_di"]:
        return 0.0
    return _clamp01((ind["adx"] - 15.0) / 20.0)


def _across_timeframes(
    indicators_by_tf: Mapping[str, Mapping[str, float]], factor: Callable[[Mapping[str, float]], float | None]
) -> float:
    """Weighted mean over 1h/15m/5m; a timeframe without data counts as no support (0)."""
    total = 0.0
    for tf, weight in TIMEFRAME_WEIGHTS.items():
        value = factor(indicators_by_tf.get(tf, {}))
        total += weight * (value or 0.0)
    return total


def calculate_mtf_confluence(indicators_by_tf: Mapping[str, Mapping[str, float]]) -> float:
    """Bullish multi-timeframe confluence, 0-100, from three core factors:

    trend alignment (40 points: EMA stack and price vs EMA21, timeframes weighted 1h 0.5, 15m 0.3, 5m 0.2),
    momentum agreement (35 points: RSI and MACD histogram, same timeframe weights) and
    1h trend strength (25 points: ADX with +DI leading).
    """
    score = (
        CONFLUENCE_TREND_WEIGHT * _across_timeframes(indicators_by_tf, trend_alignment)
        + CONFLUENCE_MOMENTUM_WEIGHT * _across_timeframes(indicators_by_tf, momentum_agreement)
        + CONFLUENCE_STRENGTH_WEIGHT * trend_strength(indicators_by_tf.get("1h", {}))
    )
    return round(min(max(score, 0.0), 100.0), 2)
