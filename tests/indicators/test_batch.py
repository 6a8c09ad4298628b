"""batch_latest_indicators: every window bit-identical to latest_indicators (keys, order and every bit)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.indicators.batch import INDICATOR_NAMES, batch_latest_indicators, row_to_dict
from app.indicators.technical import latest_indicators

SAMPLE = Path(__file__).resolve().parents[2] / "app" / "data" / "sample" / "binance_BTCUSDT_5m.csv.gz"


@pytest.fixture(scope="module")
def btc() -> tuple[np.ndarray, ...]:
    frame = pd.read_csv(SAMPLE)
    return tuple(frame[k].to_numpy(np.float64) for k in ("open", "high", "low", "close", "volume"))


def bits(values: dict[str, float]) -> list[tuple[str, bytes]]:
    return [(name, struct.pack("<d", value)) for name, value in values.items()]


def assert_identical(arrays: tuple[np.ndarray, ...], ends: np.ndarray, length: int, chunk: int = 4096) -> None:
    result = batch_latest_indicators(*arrays, ends, length, chunk=chunk)
    assert result.shape == (len(ends), len(INDICATOR_NAMES))
    for row, end in zip(result, ends.tolist(), strict=True):
        expected = latest_indicators(*(a[end - length + 1:end + 1] for a in arrays))
        assert bits(row_to_dict(row)) == bits(expected), (length, end)


def test_names_follow_latest_indicators_insertion_order(btc: tuple[np.ndarray, ...]) -> None:
    window = tuple(a[:300] for a in btc)
    assert tuple(latest_indicators(*window)) == INDICATOR_NAMES


@pytest.mark.parametrize("length", [288, 100, 168])
def test_real_windows_of_the_backtest_lengths(btc: tuple[np.ndarray, ...], length: int) -> None:
    ends = np.arange(length - 1 + 7000, length - 1 + 9000)
    assert_identical(btc, ends, length, chunk=700)


@pytest.mark.parametrize("length", [1, 2, 5, 14, 15, 20, 27, 28, 29, 30, 34, 50, 200])
def test_real_short_windows(btc: tuple[np.ndarray, ...], length: int) -> None:
    ends = np.arange(length - 1, length - 1 + 1500)
    assert_identical(btc, ends, length)


def test_scattered_ends_and_repeated_ends(btc: tuple[np.ndarray, ...]) -> None:
    rng = np.random.default_rng(5)
    ends = np.sort(rng.choice(np.arange(287, len(btc[0])), 600))
    assert_identical(btc, ends, 288, chunk=256)


def test_no_windows_gives_an_empty_table(btc: tuple[np.ndarray, ...]) -> None:
    assert batch_latest_indicators(*btc, np.array([], dtype=np.int64), 288).shape == (0, len(INDICATOR_NAMES))


def test_a_window_outside_the_series_is_refused(btc: tuple[np.ndarray, ...]) -> None:
    with pytest.raises(ValueError):
        batch_latest_indicators(*btc, np.array([10]), 288)


@st.composite
def candles(draw: st.DrawFn) -> tuple[tuple[np.ndarray, ...], np.ndarray, int]:
    n = draw(st.integers(1, 140))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    steps = rng.normal(0, draw(st.sampled_from([0.0, 1e-9, 1e-3, 0.03])), n)
    steps[rng.random(n) < draw(st.floats(0, 0.9))] = 0.0  # flat runs: equal closes hit TA-Lib's special cases
    close = np.round(100 * np.exp(np.cumsum(steps)), draw(st.sampled_from([2, 6, 12])))
    open_ = np.concatenate(([close[0]], close[:-1]))
    high = np.maximum(open_, close) * (1 + rng.random(n) * draw(st.sampled_from([0.0, 1e-3])))
    low = np.minimum(open_, close) * (1 - rng.random(n) * draw(st.sampled_from([0.0, 1e-3])))
    volume = np.where(rng.random(n) < 0.3, 0.0, rng.random(n) * 50)
    length = draw(st.integers(1, n))
    ends = np.unique(rng.integers(length - 1, n, draw(st.integers(1, 12))))
    return (open_, high, low, close, volume), ends, length


@settings(max_examples=400, deadline=None, derandomize=True)  # a fixed sample in CI; 3,000 random ones passed
@given(candles())
def test_random_series_match_bit_for_bit(case: tuple[tuple[np.ndarray, ...], np.ndarray, int]) -> None:
    arrays, ends, length = case
    assert_identical(arrays, ends, length, chunk=5)
