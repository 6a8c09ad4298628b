"""support_resistance_zones: bit-identical to the plain numpy formulation it replaced (kept here as reference),
in the numpy path the live service runs and in the compiled one (numba) backtests run."""

from __future__ import annotations

import struct
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.risk import RiskLimits
from app.domain.values import SupportResistance
from app.features.levels import SupportResistanceDetector, ZoneLevels
from app.indicators.batch import compiled_kernels
from app.indicators.technical import rolling_max, rolling_min

SAMPLE = Path(__file__).resolve().parents[2] / "app" / "data" / "sample" / "binance_BTCUSDT_5m.csv.gz"


# ---- the reference: the implementation before the speed-up, verbatim apart from being free functions ----------

def reference_zones(high, low, threshold_pct: Decimal = Decimal("0.5"), w: int = 5) -> tuple:
    high, low = np.asarray(high, dtype=np.float64), np.asarray(low, dtype=np.float64)
    prices, _ = _ref_pivots(high, low, w)
    if len(prices) == 0:
        return ()
    threshold = float(threshold_pct) / 100.0
    levels = _ref_cluster(prices, threshold)
    return _ref_score_levels(np.asarray(levels), high, low, threshold)


def _ref_pivots(high: np.ndarray, low: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(high)
    if n < 2 * w + 1 or len(low) != n:
        return np.empty(0), np.empty(0, dtype=np.int64)
    tops = np.nonzero(high[w : n - w] >= rolling_max(high, 2 * w + 1)[2 * w :])[0] + w
    bottoms = np.nonzero(low[w : n - w] <= rolling_min(low, 2 * w + 1)[2 * w :])[0] + w
    return np.concatenate((high[tops], low[bottoms])), np.concatenate((tops, bottoms))


def _ref_cluster(prices: np.ndarray, threshold: float) -> list[float]:
    ordered = sorted(prices.tolist())
    levels: list[float] = []
    group = [ordered[0]]
    for price in ordered[1:]:
        if price > group[0] * (1.0 + threshold):
            levels.append(sum(group) / len(group))
            group = []
        group.append(price)
    levels.append(sum(group) / len(group))
    return levels


def _ref_score_levels(levels: np.ndarray, high: np.ndarray, low: np.ndarray, threshold: float) -> tuple:
    column = levels[:, None]
    tolerance = column * threshold
    near = (np.abs(high - column) <= tolerance) | (np.abs(low - column) <= tolerance)
    touches = near.sum(axis=1)
    n = near.shape[1]
    last_touch = n - 1 - np.argmax(near[:, ::-1], axis=1)
    strength = np.minimum(touches / 6.0, 1.0) * 0.7 + last_touch / max(n - 1, 1) * 0.3
    return tuple(zip(levels.tolist(), touches.tolist(), np.round(strength, 4).tolist(), strict=True))


# ---- comparison -----------------------------------------------------------------------------------------------

def bits(zones: tuple) -> list[tuple[bytes, int, bytes, type, type, type]]:
    """Every float by its bytes (so -0.0, NaN payloads and last bits count), and every element's type."""
    return [(struct.pack("<d", p), t, struct.pack("<d", s), type(p), type(t), type(s)) for p, t, s in zones]


def assert_same(risk: SupportResistanceDetector, high: np.ndarray, low: np.ndarray, threshold_pct: Decimal, w: int) -> None:
    expected = bits(reference_zones(high, low, threshold_pct, w))
    assert bits(risk.support_resistance_zones(high, low)) == expected
    assert bits(risk.support_resistance_zones(high, low, compiled=True)) == expected


@pytest.fixture(scope="module")
def btc() -> tuple[np.ndarray, np.ndarray]:
    frame = pd.read_csv(SAMPLE)
    return frame["high"].to_numpy(np.float64), frame["low"].to_numpy(np.float64)


def resampled(values: np.ndarray, bars: int, how: str) -> np.ndarray:
    cut = len(values) // bars * bars
    blocks = values[:cut].reshape(-1, bars)
    return blocks.max(axis=1) if how == "max" else blocks.min(axis=1)


@pytest.mark.parametrize("bars", [1, 3, 12])  # 5m, 15m and 1h candles
def test_real_windows_of_100_candles(btc: tuple[np.ndarray, np.ndarray], bars: int) -> None:
    high, low = resampled(btc[0], bars, "max"), resampled(btc[1], bars, "min")
    risk = SupportResistanceDetector(RiskLimits().sr_touch_threshold_pct)
    windows = range(0, len(high) - 100, 1 if bars > 1 else 3)
    for start in windows:
        assert_same(risk, high[start:start + 100], low[start:start + 100], Decimal("0.5"), 5)
    assert len(windows) > 2000


@pytest.mark.parametrize(("threshold", "w", "length"), [("0.1", 5, 100), ("2", 5, 288), ("0.5", 3, 60),
                                                       ("0.5", 5, 11), ("0.5", 5, 12), ("0.5", 1, 3)])
def test_real_windows_with_other_settings(btc: tuple[np.ndarray, np.ndarray], threshold: str, w: int,
                                          length: int) -> None:
    high, low = btc
    risk = SupportResistanceDetector(Decimal(threshold), pivot_window=w)
    for start in range(0, 30_000, 29):
        assert_same(risk, high[start:start + length], low[start:start + length], Decimal(threshold), w)


def test_real_windows_return_levels_with_touches(btc: tuple[np.ndarray, np.ndarray]) -> None:
    zones = SupportResistanceDetector(RiskLimits().sr_touch_threshold_pct).support_resistance_zones(btc[0][:100], btc[1][:100])
    assert zones and all(touches >= 1 and 0.0 < strength <= 1.0 for _, touches, strength in zones)
    assert [price for price, _, _ in zones] == sorted(price for price, _, _ in zones)


def test_short_or_mismatched_windows_have_no_zones() -> None:
    risk = SupportResistanceDetector(RiskLimits().sr_touch_threshold_pct)
    ramp = np.arange(1.0, 11.0)
    assert risk.support_resistance_zones(ramp, ramp) == () == reference_zones(ramp, ramp)
    assert risk.support_resistance_zones(np.ones(20), np.ones(19)) == ()
    assert risk.support_resistance_zones(np.array([]), np.array([])) == ()


@st.composite
def windows(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, Decimal, int]:
    w = draw(st.sampled_from([1, 2, 5]))
    n = draw(st.integers(0, 130))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    steps = rng.normal(0, draw(st.sampled_from([0.0, 1e-6, 1e-3, 0.01])), n)
    steps[rng.random(n) < draw(st.floats(0, 1))] = 0.0  # flat runs: equal highs and lows, ties for the maximum
    close = np.round(100 * np.exp(np.cumsum(steps)), draw(st.sampled_from([1, 2, 8, 15])))
    spread = draw(st.sampled_from([0.0, 1e-4, 3e-3]))
    high = np.round(close * (1 + rng.random(n) * spread), draw(st.sampled_from([2, 15])))
    low = np.round(close * (1 - rng.random(n) * spread), draw(st.sampled_from([2, 15])))
    if draw(st.booleans()):
        high, low = low, high  # inverted candles: the rules must not rely on low <= high
    threshold = draw(st.sampled_from([Decimal("0.001"), Decimal("0.5"), Decimal("3")]))
    return high, low, threshold, w


@settings(max_examples=1500, deadline=None, derandomize=True)
@given(windows())
def test_random_windows_match_bit_for_bit(case: tuple[np.ndarray, np.ndarray, Decimal, int]) -> None:
    high, low, threshold, w = case
    assert_same(SupportResistanceDetector(threshold, pivot_window=w), high, low, threshold, w)


@pytest.mark.filterwarnings("ignore:invalid value encountered")
@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.floats(-1e6, 1e6, allow_subnormal=True) | st.sampled_from([0.0, -0.0, 1.0, 2.0]),
                          st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 1.0])),
                min_size=0, max_size=40),
       st.sampled_from([1, 2, 5]))
def test_odd_floats_match_bit_for_bit(pairs: list[tuple[float, float]], w: int) -> None:
    """Zeros of both signs, negatives, subnormals, infinities and NaN: still the same output (or the same error)."""
    high = np.array([h for h, _ in pairs], dtype=np.float64)
    low = np.array([lo for _, lo in pairs], dtype=np.float64)
    risk = SupportResistanceDetector(RiskLimits().sr_touch_threshold_pct, pivot_window=w)
    try:
        expected = bits(reference_zones(high, low, Decimal("0.5"), w))
    except (ValueError, OverflowError) as error:
        for compiled in (False, True):
            with pytest.raises(type(error)):
                risk.support_resistance_zones(high, low, compiled)
        return
    assert bits(risk.support_resistance_zones(high, low)) == expected
    assert bits(risk.support_resistance_zones(high, low, compiled=True)) == expected


def test_the_compiled_path_is_in_use() -> None:
    assert compiled_kernels() is not None  # numba is a dependency: the compiled comparisons above were not skipped


def test_python_rounding_to_four_places_matches_numpy() -> None:
    """The strength is rounded as round(x * 1e4) / 1e4: np.round's way (Python's round(x, 4) differs sometimes)."""
    rng = np.random.default_rng(7)
    values = np.concatenate((rng.random(200_000), np.arange(20_001) / 2e4, np.arange(20_001) / 2e4 + 1e-17,
                             np.minimum(np.arange(101)[:, None] / 6.0, 1.0).ravel() * 0.7))
    ours = np.array([round(v * 10000.0) / 10000.0 for v in values.tolist()])
    assert ours.tobytes() == np.round(values, 4).tobytes()
    assert any(round(v, 4) != round(v * 10000.0) / 10000.0 for v in values.tolist())


# ---- many windows of one series at once (backtests) -------------------------------------------------------------

def assert_windows_same(risk: SupportResistanceDetector, high: np.ndarray, low: np.ndarray, length: int, threshold_pct: Decimal,
                        w: int) -> None:
    starts = np.arange(0, len(high) - length + 1)
    batch = risk.support_resistance_zone_windows(high, low, starts, length)
    assert batch is not None and len(batch) == len(starts)
    for start, zones in zip(starts.tolist(), batch, strict=True):
        window = (high[start:start + length], low[start:start + length])
        assert bits(zones) == bits(reference_zones(*window, threshold_pct, w)), start


@pytest.mark.parametrize(("bars", "length"), [(3, 100), (1, 288), (12, 168)])  # the backtest's windows
def test_windows_of_a_real_series_at_once(btc: tuple[np.ndarray, np.ndarray], bars: int, length: int) -> None:
    high, low = resampled(btc[0], bars, "max")[:length + 700], resampled(btc[1], bars, "min")[:length + 700]
    assert_windows_same(SupportResistanceDetector(RiskLimits().sr_touch_threshold_pct), high, low, length, Decimal("0.5"), 5)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(windows(), st.integers(1, 40))
def test_windows_of_random_series_at_once(case: tuple[np.ndarray, np.ndarray, Decimal, int], length: int) -> None:
    """Pivots found once over the whole series are the pivots of each window (all values finite), flat runs,
    ties and inverted candles included."""
    high, low, threshold, w = case
    if len(high) < length:
        return
    risk = SupportResistanceDetector(threshold, pivot_window=w)
    assert_windows_same(risk, high, low, length, threshold, w)


def test_a_series_with_a_non_finite_value_is_left_to_the_window_by_window_path() -> None:
    high = np.linspace(100.0, 120.0, 50)
    high[20] = np.nan
    assert SupportResistanceDetector(RiskLimits().sr_touch_threshold_pct).support_resistance_zone_windows(high, high - 1.0, np.arange(10), 30) is None


def reference_levels(zones: tuple, price: float) -> tuple[SupportResistance, ...]:
    """The plain formulation of SupportResistanceDetector.levels_around: a stable sort of the zones by distance from the price."""
    if price <= 0:
        return ()
    ordered = sorted((z for z in zones if z[0] != price), key=lambda z: abs(z[0] - price))
    return tuple(SupportResistance(p, "support" if p < price else "resistance", t, s) for p, t, s in ordered)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(90, 110).map(float), st.integers(1, 9), st.floats(0, 1)), max_size=12),
       st.sampled_from([0.0, -1.0, 95.0, 100.0, 100.5, 104.0, 111.0]))
def test_levels_around_any_price_are_the_plain_sort_ties_and_a_zone_at_the_price_included(
        zones: list[tuple[float, int, float]], price: float) -> None:
    """Whole-number prices make ties in distance (one zone each side) and zones exactly at the price common."""
    levels = ZoneLevels(tuple(zones))
    assert levels.around(price) == reference_levels(tuple(zones), price)
    assert levels.around(price + 0.25) == reference_levels(tuple(zones), price + 0.25)  # one window, another cycle
    assert SupportResistanceDetector.levels_around(tuple(zones), price) == reference_levels(tuple(zones), price)
