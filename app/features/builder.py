"""Per-symbol market features for one cycle: indicators per timeframe, regime, S/R levels and confluence."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import numpy as np

from app.domain.clock import ms_from_utc
from app.domain.profiles import (
    CONFLUENCE_MOMENTUM_WEIGHT,
    CONFLUENCE_STRENGTH_WEIGHT,
    CONFLUENCE_TREND_WEIGHT,
    TIMEFRAME_WEIGHTS,
)
from app.domain.values import ZERO, Candle, MarketFeatures, RegimeAnalysis
from app.features.levels import SupportResistanceDetector, Zone, ZoneLevels
from app.features.regime import MarketRegimeAnalyzer
from app.indicators.batch import batch_latest_indicators
from app.indicators.indicator_row import INDICATOR_NAMES, row_to_dict
from app.indicators.technical import latest_indicators
from app.marketdata.candles import CandleWindow
from app.marketdata.series import CandleArrays

log = logging.getLogger(__name__)

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
            return candles.last_close() if isinstance(candles, CandleWindow) else candles[-1].close
    return ZERO


def window_key(candles: Sequence[Candle]) -> tuple[int, int, int]:
    """Identifies a window of closed candles: its length and first and last open times."""
    if not candles:
        return (0, 0, 0)
    return (len(candles), candles[0].open_time_ms, candles[-1].open_time_ms)


@dataclass(slots=True)
class _Analysed:
    """One timeframe's window and everything derived from it alone; reused while the window is unchanged (never
    changed once built; not frozen, which would make building one, once a cycle, three times as slow)."""

    key: tuple[int, int, int]
    values: dict[str, float]
    levels: ZoneLevels  # the S/R zones (of the 15m window only)
    trend: float | None
    momentum: float | None
    strength: float
    recent: Sequence[Candle]


_NO_LEVELS = ZoneLevels(())

# a refill: the series' columns, the window length, the first window's last bar, one row per window, and per row
# whether it holds no NaN
_Block = tuple[CandleArrays, int, int, np.ndarray, list[bool]]
_ZoneBlock = tuple[CandleArrays, int, int, list[tuple[Zone, ...]]]


def _covers(block: _Block | _ZoneBlock, arrays: CandleArrays, length: int, end: int) -> bool:
    """Whether a refill of `arrays` holds the window of `length` bars ending at bar `end`."""
    return block[0] is arrays and block[1] == length and block[2] <= end < block[2] + len(block[3])


class RefillRanges:
    """Which windows a refill computes: from the one asked for, twice as many as the series' previous refill (from
    `first` up to `largest`), and none closing after the horizon (a worker's block of cycles: the next block may go
    to another worker, which would compute them again) but for a small floor, a batch having a fixed cost (two
    windows checked against TA-Lib)."""

    HORIZON_FLOOR = 256

    def __init__(self, first: int, largest: int) -> None:
        self.first, self.largest = first, largest
        self._sizes: dict[tuple[str, str], int] = {}
        self.horizon_ms: int | None = None  # past this open time, a refill computes no more than the floor

    def next_ends(self, symbol: str, tf: str, arrays: CandleArrays, end: int) -> np.ndarray:
        """The last bars of the windows of the refill that starts with the window ending at bar `end`."""
        size = min(self._sizes.get((symbol, tf), self.first // 2) * 2, self.largest)
        self._sizes[(symbol, tf)] = size
        stop = min(end + size, len(arrays))
        if self.horizon_ms is not None:
            horizon = int(np.searchsorted(arrays.open_time_ms, self.horizon_ms, side="right"))
            stop = min(stop, max(horizon, end + self.HORIZON_FLOOR))
        return np.arange(end, stop, dtype=np.int64)


class SeriesIndicatorRows:
    """`latest_indicators` of store-backed windows, computed for many consecutive windows of a series at once.

    The rows are bit-identical to calling latest_indicators on each window (app.indicators.batch and its
    tests), so a backtest reads the same numbers a live cycle computes from its klines. Each refill covers
    the next windows of the same length; the batch grows up to 16,384 windows so short runs pay little.
    The replay depends on how the installed TA-Lib was compiled (fused multiply-add or not), so every refill
    checks its first and last window against TA-Lib itself; on any difference the batch path is switched off
    for good and each window goes through TA-Lib, as the live path does.
    """

    def __init__(self, batch: Callable[..., np.ndarray] = batch_latest_indicators) -> None:
        self._batch = batch
        self._blocks: dict[tuple[str, str], _Block] = {}
        self.ranges = RefillRanges(4096, 16384)
        self.batched = True

    def latest(self, symbol: str, tf: str, window: CandleWindow) -> dict[str, float]:
        arrays, start, stop = window.source()
        length, end = stop - start, stop - 1
        if not self.batched:
            return _latest(arrays.slice(start, stop))
        block = self._blocks.get((symbol, tf))
        if block is None or not _covers(block, arrays, length, end):
            block = self._refill(symbol, tf, arrays, length, end)
        index = end - block[2]
        # a row without NaN is every name with its value: the same dict row_to_dict gives, built at C speed
        row = block[3][index]
        return dict(zip(INDICATOR_NAMES, row.tolist(), strict=True)) if block[4][index] else row_to_dict(row)

    def _refill(self, symbol: str, tf: str, arrays: CandleArrays, length: int, end: int) -> _Block:
        ends = self.ranges.next_ends(symbol, tf, arrays, end)
        rows = self._batch(arrays.open, arrays.high, arrays.low, arrays.close, arrays.volume, ends, length)
        for i in {0, len(ends) - 1}:
            last = int(ends[i])
            if row_to_dict(rows[i]) != _latest(arrays.slice(last + 1 - length, last + 1)):
                log.warning("batched indicators differ from TA-Lib on %s %s; computing each window with TA-Lib", symbol, tf)
                self.batched = False
                rows = np.stack([_row(_latest(arrays.slice(int(e) + 1 - length, int(e) + 1))) for e in ends])
                break
        block = (arrays, length, end, rows, (~np.isnan(rows).any(axis=1)).tolist())
        self._blocks[(symbol, tf)] = block
        return block


class SeriesZones:
    """`support_resistance_zones` of store-backed windows, many consecutive windows of a series at once (compiled:
    SupportResistanceDetector.support_resistance_zone_windows), at most WINDOWS at a time (a window's zones, as Python tuples,
    take ~1 KB) and, like the indicator rows, none past a planned horizon but for the floor. Each refill checks its
    first and last window against the per-window path and switches batching off for good on any difference."""

    WINDOWS = 2048

    def __init__(self, risk: SupportResistanceDetector) -> None:
        self._levels = risk
        self._blocks: dict[tuple[str, str], _ZoneBlock] = {}
        self.ranges = RefillRanges(self.WINDOWS, self.WINDOWS)
        self.batched = True

    def zones(self, symbol: str, tf: str, window: CandleWindow) -> tuple[Zone, ...]:
        arrays, start, stop = window.source()
        length, end = stop - start, stop - 1
        block = self._blocks.get((symbol, tf))
        if self.batched and (block is None or not _covers(block, arrays, length, end)):
            block = self._refill(symbol, tf, arrays, length, end)
        if not self.batched or block is None:
            return self._levels.support_resistance_zones(arrays.high[start:stop], arrays.low[start:stop], compiled=True)
        return block[3][end - block[2]]

    def _refill(self, symbol: str, tf: str, arrays: CandleArrays, length: int, end: int) -> _ZoneBlock | None:
        ends = self.ranges.next_ends(symbol, tf, arrays, end)
        zones = self._levels.support_resistance_zone_windows(arrays.high, arrays.low, ends - length + 1, length)
        if zones is None:
            self.batched = False
            return None
        for i in (0, len(ends) - 1):
            first = int(ends[i]) + 1 - length
            if zones[i] != self._levels.support_resistance_zones(
                    arrays.high[first:first + length], arrays.low[first:first + length]):
                log.warning("batched S/R zones differ on %s %s; computing each window alone", symbol, tf)
                self.batched = False
                return None
        block = (arrays, length, end, zones)
        self._blocks[(symbol, tf)] = block
        return block


def _latest(columns: CandleArrays) -> dict[str, float]:
    return latest_indicators(columns.open, columns.high, columns.low, columns.close, columns.volume)


def _row(values: Mapping[str, float]) -> np.ndarray:
    return np.array([values.get(name, np.nan) for name in INDICATOR_NAMES])


class MarketFeatureBuilder:
    """Builds MarketFeatures; keep one per engine so its caches carry over between cycles.

    Everything derived from one timeframe's window of closed candles (indicators, S/R zones, its confluence
    factors, the last candles) is a pure function of that window, so a window seen in the previous cycle (the 1h
    one for 11 cycles in 12, the 15m one for 2 in 3) is not computed again; nor is the regime of an unchanged
    1h and 15m pair. With `batch_indicators` (backtests), the indicators and the S/R zones of a simulated exchange's
    store windows are computed many at a time (SeriesIndicatorRows, SeriesZones, compiled); otherwise each window
    goes through TA-Lib and numpy, as live.
    """

    def __init__(self, regime_analyzer: MarketRegimeAnalyzer, levels: SupportResistanceDetector,
                 batch_indicators: bool = False) -> None:
        self._regime = regime_analyzer
        self._levels = levels
        self._cache = CandleArrayCache()
        self._rows = SeriesIndicatorRows() if batch_indicators else None
        self._zones = SeriesZones(levels) if batch_indicators else None
        self._memo: dict[tuple[str, str], _Analysed] = {}
        self._regimes: dict[str, tuple[_Analysed, _Analysed, RegimeAnalysis]] = {}

    @property
    def levels(self) -> SupportResistanceDetector:
        return self._levels

    def plan_until(self, horizon: datetime | None) -> None:
        """Batched indicators and S/R zones stop near windows closing by `horizon` (a worker computing one block of
        cycles: the next block may go to another worker)."""
        horizon_ms = None if horizon is None else ms_from_utc(horizon)
        for batches in (self._rows, self._zones):
            if batches is not None:
                batches.ranges.horizon_ms = horizon_ms

    def build(
        self, symbol: str, now: datetime, candles_5m: Sequence[Candle], candles_15m: Sequence[Candle],
        candles_1h: Sequence[Candle],
    ) -> MarketFeatures:
        """Regime from 1h (the 15m ATR can flag a fresh volatility spike), S/R from the 15m swings,
        entry price = the last 5m close."""
        by_tf = {"5m": candles_5m, "15m": candles_15m, "1h": candles_1h}
        analysed = {tf: self._analyse(symbol, tf, candles) for tf, candles in by_tf.items()}
        last_price = _last_price(candles_5m, candles_15m, candles_1h)
        return MarketFeatures(
            symbol=symbol, time=now, last_price=last_price,
            indicators={tf: dict(a.values) for tf, a in analysed.items()},  # copies: the memo stays intact
            regime=self._regime_of(symbol, analysed["1h"], analysed["15m"]),
            levels=analysed[SR_TIMEFRAME].levels.around(float(last_price)),
            confluence=_confluence_of(analysed),
            recent={tf: a.recent for tf, a in analysed.items()},
        )

    def _regime_of(self, symbol: str, hourly: _Analysed, quarter: _Analysed) -> RegimeAnalysis:
        # the memo hands out the same _Analysed while a window is unchanged: identity stands for the windows' keys
        hit = self._regimes.get(symbol)
        if hit is None or hit[0] is not hourly or hit[1] is not quarter:
            hit = (hourly, quarter,
                   self._regime.classify_from_indicators(hourly.values, symbol=symbol, confirm=quarter.values))
            self._regimes[symbol] = hit
        return hit[2]

    def _analyse(self, symbol: str, tf: str, candles: Sequence[Candle]) -> _Analysed:
        window = candles if isinstance(candles, CandleWindow) else None
        key = window.key() if window is not None else window_key(candles)
        hit = self._memo.get((symbol, tf))
        if hit is not None and hit.key == key:
            return hit
        arrays: Arrays | None = None  # float columns: TA-Lib needs them, and so do the S/R zones
        if self._rows is not None and window is not None and len(window):
            values = self._rows.latest(symbol, tf, window)
        else:
            arrays = self._arrays(symbol, tf, candles, window)
            values = latest_indicators(*arrays)
        zones: tuple[Zone, ...] = ()
        if tf == SR_TIMEFRAME and self._zones is not None and window is not None and len(window):
            zones = self._zones.zones(symbol, tf, window)
        elif tf == SR_TIMEFRAME:
            arrays = arrays if arrays is not None else self._arrays(symbol, tf, candles, window)
            zones = self._levels.support_resistance_zones(arrays[1], arrays[2], compiled=self._rows is not None)
        # the last candles only an LLM prompt reads: a store window's stay unbuilt until then
        recent = window.tail(RECENT_CANDLES) if window is not None else tuple(candles[-RECENT_CANDLES:])
        analysed = _Analysed(key, values, ZoneLevels(zones) if zones else _NO_LEVELS, trend_alignment(values),
                             momentum_agreement(values), trend_strength(values), recent)
        self._memo[(symbol, tf)] = analysed
        return analysed

    def _arrays(self, symbol: str, tf: str, candles: Sequence[Candle], window: CandleWindow | None) -> Arrays:
        """A store window already holds its float columns (the same numbers the cache would convert from klines);
        klines are converted, reusing the previous window's columns."""
        if window is None:
            return self._cache.arrays(symbol, tf, candles)
        columns = window.float_arrays()
        return columns.open, columns.high, columns.low, columns.close, columns.volume


def build_market_features(
    symbol: str, now: datetime, candles_5m: Sequence[Candle], candles_15m: Sequence[Candle],
    candles_1h: Sequence[Candle], regime_analyzer: MarketRegimeAnalyzer, levels: SupportResistanceDetector,
) -> MarketFeatures:
    """One-off features (no cache between calls); a loop should keep a MarketFeatureBuilder instead."""
    return MarketFeatureBuilder(regime_analyzer, levels).build(symbol, now, candles_5m, candles_15m, candles_1h)


# ---- confluence -----------------------------------------------------------------------------------------------


def _clamp01(value: float) -> float:
    return min(max(value, 0.0), 1.0)


_TREND_KEYS = frozenset(("close", "ema_9", "ema_21"))
_STRENGTH_KEYS = frozenset(("adx", "plus_di", "minus_di"))


def trend_alignment(ind: Mapping[str, float]) -> float | None:
    """Share of bullish EMA facts on one timeframe: EMA9 > EMA21, close > EMA21, EMA21 > EMA50."""
    if not ind.keys() >= _TREND_KEYS:
        return None
    ema_21 = ind["ema_21"]
    bullish = int(ind["ema_9"] > ema_21) + int(ind["close"] > ema_21)  # int(): numpy's bools would add as `or`
    if "ema_50" not in ind:
        return bullish / 2
    return (bullish + int(ema_21 > ind["ema_50"])) / 3


def momentum_agreement(ind: Mapping[str, float]) -> float | None:
    """Bullish momentum on one timeframe: RSI scaled from 40 (0) to 60 (1), and MACD histogram above zero."""
    total, parts = 0.0, 0  # added from 0.0 left to right, as sum() adds the parts' floats
    if "rsi" in ind:
        total, parts = total + _clamp01((ind["rsi"] - 40.0) / 20.0), parts + 1
    if "macd_hist" in ind:
        total, parts = total + (1.0 if ind["macd_hist"] > 0 else 0.0), parts + 1
    return total / parts if parts else None


def trend_strength(ind: Mapping[str, float]) -> float:
    """1h ADX scaled from 15 (0) to 35 (1), counted only when +DI leads (a strong downtrend is no help)."""
    if not ind.keys() >= _STRENGTH_KEYS or ind["plus_di"] <= ind["minus_di"]:
        return 0.0
    return _clamp01((ind["adx"] - 15.0) / 20.0)


def _across_timeframes(factor_of: Callable[[str], float | None]) -> float:
    """Weighted mean over 1h/15m/5m; a timeframe without data counts as no support (0)."""
    total = 0.0
    for tf, weight in TIMEFRAME_WEIGHTS.items():
        total += weight * (factor_of(tf) or 0.0)
    return total


def confluence_from_factors(
    trend_by_tf: Mapping[str, float | None], momentum_by_tf: Mapping[str, float | None], strength: float
) -> float:
    """The confluence score from each timeframe's trend alignment and momentum agreement and the 1h strength."""
    return _score(_across_timeframes(trend_by_tf.get), _across_timeframes(momentum_by_tf.get), strength)


def _confluence_of(analysed: Mapping[str, _Analysed]) -> float:
    """confluence_from_factors of the analysed timeframes (all three), without building their factors' mappings."""
    return _score(_across_timeframes(lambda tf: analysed[tf].trend),
                  _across_timeframes(lambda tf: analysed[tf].momentum), analysed["1h"].strength)


def _score(trend: float, momentum: float, strength: float) -> float:
    score = CONFLUENCE_TREND_WEIGHT * trend + CONFLUENCE_MOMENTUM_WEIGHT * momentum + CONFLUENCE_STRENGTH_WEIGHT * strength
    return round(min(max(score, 0.0), 100.0), 2)


def calculate_mtf_confluence(indicators_by_tf: Mapping[str, Mapping[str, float]]) -> float:
    """Bullish multi-timeframe confluence, 0-100, from three core factors:

    trend alignment (40 points: EMA stack and price vs EMA21, timeframes weighted 1h 0.5, 15m 0.3, 5m 0.2),
    momentum agreement (35 points: RSI and MACD histogram, same timeframe weights) and
    1h trend strength (25 points: ADX with +DI leading).
    """
    return confluence_from_factors(
        {tf: trend_alignment(indicators_by_tf.get(tf, {})) for tf in TIMEFRAME_WEIGHTS},
        {tf: momentum_agreement(indicators_by_tf.get(tf, {})) for tf in TIMEFRAME_WEIGHTS},
        trend_strength(indicators_by_tf.get("1h", {})),
    )
