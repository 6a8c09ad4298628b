"""Support/resistance detection on hand-made candles: double bottoms, double tops, touch counting."""

from __future__ import annotations

from decimal import Decimal

import numpy as np

from app.features.levels import SupportResistanceDetector


def path(points: list[tuple[int, float]], n: int, spread: float = 0.001) -> tuple[np.ndarray, ...]:
    close = np.interp(np.arange(n), [p[0] for p in points], [p[1] for p in points])
    return close * (1 + spread), close * (1 - spread), close


def detect(high, low, close, price: float, threshold: str = "0.5"):
    manager = SupportResistanceDetector(Decimal(threshold))
    return manager.detect_support_resistance_levels(high, low, close, price)


def test_double_bottom_becomes_one_support_with_two_touches_or_more() -> None:
    high, low, close = path([(0, 108), (15, 100), (27, 106), (40, 100.3), (55, 107), (79, 104)], 80)
    levels = detect(high, low, close, 104.0)
    supports = [lv for lv in levels if lv.kind == "support" and abs(lv.price - 100.05) / 100 < 0.005]
    assert len(supports) == 1
    assert supports[0].touches >= 2
    assert all(lv.kind == "resistance" for lv in levels if lv.price > 104)


def test_double_top_becomes_one_resistance() -> None:
    high, low, close = path([(0, 92), (15, 100), (27, 94), (40, 99.8), (55, 93), (79, 96)], 80)
    levels = detect(high, low, close, 96.0)
    tops = [lv for lv in levels if lv.kind == "resistance" and 99.5 < lv.price < 100.5]
    assert len(tops) == 1
    assert tops[0].touches >= 2


def test_levels_are_sorted_by_distance_from_price() -> None:
    high, low, close = path([(0, 108), (15, 100), (27, 106), (40, 100.3), (55, 107), (79, 104)], 80)
    levels = detect(high, low, close, 104.0)
    distances = [abs(lv.price - 104.0) for lv in levels]
    assert distances == sorted(distances)
    assert len(levels) >= 3


def touch_series() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat lows at 105 except one dip: 100.0 (the pivot), 100.4 (0.4 % away), 100.8 (0.8 % away)."""
    low = np.full(30, 105.0)
    low[12:15] = [100.0, 100.4, 100.8]
    high = low + 2.0
    return high, low, (high + low) / 2


def test_touches_count_bars_within_the_threshold() -> None:
    high, low, close = touch_series()
    level = next(lv for lv in detect(high, low, close, 106.0) if lv.price < 102)
    assert level.price == 100.0
    assert level.kind == "support"
    assert level.touches == 2  # 100.0 and 100.4; 100.8 is 0.8 % away


def test_a_wider_threshold_counts_more_touches() -> None:
    high, low, close = touch_series()
    level = next(lv for lv in detect(high, low, close, 106.0, threshold="1.0") if lv.price < 102)
    assert level.touches == 3


def test_broken_resistance_below_price_is_support() -> None:
    high, low, close = touch_series()
    assert all(lv.kind == "support" for lv in detect(high, low, close, 110.0))
    assert all(lv.kind == "resistance" for lv in detect(high, low, close, 90.0))


def test_recent_levels_are_stronger_than_old_ones_with_equal_touches() -> None:
    low = np.full(60, 110.0)
    low[10], low[50] = 100.0, 105.0
    high = low + 1.0
    levels = {round(lv.price): lv for lv in detect(high, low, (high + low) / 2, 108.0)}
    assert levels[100].touches == levels[105].touches == 1
    assert levels[105].strength > levels[100].strength


def test_too_few_bars_give_no_levels() -> None:
    high, low, close = path([(0, 100), (5, 101)], 6)
    assert detect(high, low, close, 100.5) == ()
