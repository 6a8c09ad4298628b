"""Support and resistance: swing pivots clustered into zones, scored by touches and recency, and the levels they
are at a given price. Features own the detection; the risk manager plans exits from the levels it is handed."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from decimal import Decimal

import numpy as np

from app.domain.profiles import PIVOT_WINDOW
from app.domain.values import SupportResistance
from app.indicators.batch import compiled_kernels
from app.indicators.technical import rolling_max, rolling_min

Zone = tuple[float, int, float]  # price, touches, strength
_WEIGHTED_BARS = 500  # 4.0 ** 499 and the sums below 4.0 ** 500 stay finite


@functools.cache
def _touch_weights(bars: int) -> np.ndarray:
    """Columns of ones and of 4**j: a boolean row times it gives the row's count, and a sum whose base-4 exponent
    is the last True bar whatever the summation order (the lower powers add up to less than a third of the top
    one, and every rounding of non-negative partial sums stays in [4**last, 4**(last + 1)))."""
    return np.stack((np.ones(bars), 4.0 ** np.arange(bars)), axis=1)


def _mean(values: list[float]) -> float:
    """Left to right from 0.0, as Python 3.11's sum() adds floats and the compiled zones do (3.12's sum() is
    compensated: it would round differently)."""
    total = 0.0
    for value in values:
        total += value
    return total / len(values)


def _touches_and_last(near: np.ndarray) -> list[tuple[int, int]]:
    """Per row of 1.0 / 0.0: how many ones, and the index of the last one (n - 1 when none, as argmax over a
    reversed row)."""
    n = near.shape[1]
    if n > _WEIGHTED_BARS:
        counts = near.sum(axis=1).astype(np.int64).tolist()
        return list(zip(counts, (n - 1 - near[:, ::-1].argmax(axis=1)).tolist(), strict=True))
    # dot, not @: half the call cost on such small matrices
    return [(int(count), (math.frexp(top)[1] - 1) >> 1 if top else n - 1)
            for count, top in near.dot(_touch_weights(n)).tolist()]


class SupportResistanceDetector:
    """Zones and levels of one series of highs and lows; `touch_threshold_pct` is how near a bar must come to touch."""

    def __init__(self, touch_threshold_pct: Decimal, pivot_window: int = PIVOT_WINDOW) -> None:
        self._pivot_window = pivot_window
        self._touch_threshold = float(touch_threshold_pct) / 100.0

    def detect_support_resistance_levels(
        self, high: np.ndarray, low: np.ndarray, close: np.ndarray, current_price: float
    ) -> tuple[SupportResistance, ...]:
        """Swing pivots, clustered within the touch threshold, with touch counts and a recency-weighted strength.

        A level below the price is a support, above it a resistance (an old resistance that was broken
        now supports); the result is sorted by distance from the price.
        """
        return self.levels_around(self.support_resistance_zones(high, low), current_price)

    def support_resistance_zones(self, high: np.ndarray, low: np.ndarray, compiled: bool = False) -> tuple[Zone, ...]:
        """The price-independent part of the detection: (price, touches, strength) per clustered pivot level.

        Tops are bars whose high is the highest of the 2w+1 bars centred on them, bottoms likewise with lows;
        levels are the means of the sorted pivot prices grouped by `_cluster`, scored by `_score_levels`.
        (Few numpy calls: results are bit-identical to the plain formulation kept in
        tests/services/test_sr_speed_equivalence.py.) `compiled` clusters and scores in
        app.indicators.kernels.sr_zones where numba is installed: the same bits, about three times faster; the live
        service does not load numba for it, and backtests compute most windows many at a time
        (`support_resistance_zone_windows`)."""
        high, low = np.asarray(high, dtype=np.float64), np.asarray(low, dtype=np.float64)
        tops, bottoms = self._pivots(high, low)
        if not len(tops) + len(bottoms):
            return ()
        kernels = compiled_kernels() if compiled else None
        if kernels is not None:
            # a stable sort gives what sorted() gives (pivot prices are never NaN: NaN >= x is false)
            ordered = np.sort(np.concatenate((tops, bottoms)), kind="stable")
            levels, touches, strengths = kernels.sr_zones(ordered, high, low, self._touch_threshold)
            return tuple(zip(levels.tolist(), touches.tolist(), strengths.tolist(), strict=True))
        levels = self._cluster(tops.tolist() + bottoms.tolist(), self._touch_threshold)
        return self._score_levels(levels, high, low, self._touch_threshold)

    def support_resistance_zone_windows(self, high: np.ndarray, low: np.ndarray, starts: np.ndarray,
                                        length: int) -> list[tuple[Zone, ...]] | None:
        """support_resistance_zones of many windows of one series at once (compiled, backtests), or None where it
        cannot give the same: without numba, or when the series is not all finite (TA-Lib's rolling extremes treat
        NaN by position, so a bar's pivot status would depend on where its window starts)."""
        kernels = compiled_kernels()
        w = self._pivot_window
        if kernels is None or len(high) != len(low) or not (np.isfinite(high).all() and np.isfinite(low).all()):
            return None
        n = len(high)
        if length < 2 * w + 1 or n < 2 * w + 1:
            return [() for _ in range(len(starts))]
        tops, bottoms = np.zeros(n, dtype=np.bool_), np.zeros(n, dtype=np.bool_)
        tops[w:n - w], bottoms[w:n - w] = self._pivot_masks(high, low)
        counts, levels, touches, strengths = kernels.sr_zone_windows(
            high, low, tops, bottoms, np.asarray(starts, dtype=np.int64), length, w, self._touch_threshold)
        # every window's zones in one pass (row by row, the first `count` of each), then cut per window
        kept = np.arange(levels.shape[1]) < counts[:, None]
        zones = list(zip(levels[kept].tolist(), touches[kept].tolist(), strengths[kept].tolist(), strict=True))
        ends = np.cumsum(counts).tolist()
        return [tuple(zones[end - count:end]) for end, count in zip(ends, counts.tolist(), strict=True)]

    @staticmethod
    def levels_around(zones: Sequence[Zone], current_price: float) -> tuple[SupportResistance, ...]:
        """Zones below the price are supports, above it resistances, nearest first."""
        return ZoneLevels(zones).around(current_price)

    def _pivots(self, high: np.ndarray, low: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Prices of the tops (by bar) and of the bottoms (by bar)."""
        w = self._pivot_window
        n = len(high)
        if n < 2 * w + 1 or len(low) != n:
            return np.empty(0), np.empty(0)
        tops, bottoms = self._pivot_masks(high, low)
        return high[w : n - w][tops], low[w : n - w][bottoms]

    def _pivot_masks(self, high: np.ndarray, low: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For bars w .. n-w-1: whether each is a top (its high the highest of the 2w+1 bars centred on it) and a
        bottom (likewise with lows). Needs at least 2w+1 bars."""
        w = self._pivot_window
        n = len(high)
        # the trailing window ending at bar i + w is centred on bar i
        tops = high[w : n - w] >= rolling_max(high, 2 * w + 1)[2 * w :]
        bottoms = low[w : n - w] <= rolling_min(low, 2 * w + 1)[2 * w :]
        return tops, bottoms

    @staticmethod
    def _cluster(prices: list[float], threshold: float) -> list[float]:
        """Group sorted pivot prices that lie within the threshold of the group's first price; mean of each."""
        ordered = sorted(prices)
        levels: list[float] = []
        start, limit = 0, ordered[0] * (1.0 + threshold)
        for i in range(1, len(ordered)):
            if ordered[i] > limit:
                levels.append(_mean(ordered[start:i]))
                start, limit = i, ordered[i] * (1.0 + threshold)
        levels.append(_mean(ordered[start:]))
        return levels

    @staticmethod
    def _score_levels(levels: list[float], high: np.ndarray, low: np.ndarray, threshold: float) -> tuple[Zone, ...]:
        """A bar touches a level when its high or its low lies within the threshold of it; strength weighs the
        touches (up to 6) and how recent the last one is (no touch at all counts as the last bar)."""
        n = len(high)
        column = np.array(levels)[:, None]
        # |level - x| is |x - level| bit for bit (rounding is symmetric), so one difference covers highs and lows
        distance = column - np.array((high, low))[:, None, :]  # (2, levels, bars)
        np.abs(distance, out=distance)
        # fmin, not minimum: a NaN distance on one side must not hide a touch on the other (as an `or` would not)
        nearest = np.fmin(distance[0], distance[1], out=distance[0])
        near = np.less_equal(nearest, column * threshold, out=distance[1])  # 1.0 / 0.0, ready for the dot below
        span = max(n - 1, 1)
        zones = []
        for level, (touches, last) in zip(levels, _touches_and_last(near), strict=True):
            strength = (touches / 6.0 if touches < 6 else 1.0) * 0.7 + last / span * 0.3
            # np.round(strength, 4) is rint(strength * 1e4) / 1e4 (Python's round(strength, 4) may differ)
            zones.append((level, touches, round(strength * 10000.0) / 10000.0))
        return tuple(zones)


class ZoneLevels:
    """A window's zones as levels at any price (SupportResistanceDetector.levels_around): both levels a zone can be are built once,
    for as long as its window lasts (a 15m window serves three cycles, each at its own price)."""

    __slots__ = ("_prices", "_resistances", "_supports")

    def __init__(self, zones: Sequence[Zone]) -> None:
        self._prices = [price for price, _, _ in zones]
        self._supports = [SupportResistance(price, "support", touches, strength) for price, touches, strength in zones]
        self._resistances = [SupportResistance(price, "resistance", touches, strength)
                             for price, touches, strength in zones]

    def around(self, current_price: float) -> tuple[SupportResistance, ...]:
        """Zones below the price are supports, above it resistances, nearest first (ties in zone order)."""
        if current_price <= 0:
            return ()
        prices = self._prices
        distance = [abs(price - current_price) for price in prices]
        ordered = sorted([i for i, price in enumerate(prices) if price != current_price], key=distance.__getitem__)
        supports, resistances = self._supports, self._resistances
        return tuple([supports[i] if prices[i] < current_price else resistances[i] for i in ordered])

