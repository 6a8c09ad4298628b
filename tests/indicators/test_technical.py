"""Indicator wrappers: conversion from candles, known values, and NaN-free latest values."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest

from app.domain.values import Candle
from app.indicators import technical as ta

RNG = np.random.default_rng(11)


def ohlcv(n: int) -> tuple[np.ndarray, ...]:
    close = 100 * np.exp(np.cumsum(RNG.normal(0, 0.01, n)))
    return close, close * 1.005, close * 0.995, close, np.full(n, 3.0)


def test_candle_arrays_are_float64_in_order() -> None:
    candles = [Candle(0, Decimal("1.5"), Decimal("2"), Decimal("1"), Decimal("1.75"), Decimal("10")),
               Candle(1, Decimal("1.75"), Decimal("3"), Decimal("1.25"), Decimal("2.5"), Decimal("0.1"))]
    o, h, low, c, v = ta.candle_arrays(candles)
    assert all(a.dtype == np.float64 for a in (o, h, low, c, v))
    assert o.tolist() == [1.5, 1.75] and h.tolist() == [2.0, 3.0] and low.tolist() == [1.0, 1.25]
    assert c.tolist() == [1.75, 2.5] and v.tolist() == [10.0, 0.1]


def test_candle_arrays_of_nothing() -> None:
    assert all(len(a) == 0 for a in ta.candle_arrays([]))


def test_rsi_of_a_steady_rise_is_100() -> None:
    assert ta.rsi(np.linspace(1, 2, 50))[-1] == pytest.approx(100.0)


def test_ema_of_a_constant_is_the_constant() -> None:
    assert ta.ema(np.full(60, 7.0), 21)[-1] == pytest.approx(7.0)


def test_bollinger_percent_b_and_width() -> None:
    close = ohlcv(60)[3]
    upper, middle, lower, pct_b, width = ta.bollinger(close)
    assert pct_b[-1] == pytest.approx((close[-1] - lower[-1]) / (upper[-1] - lower[-1]))
    assert width[-1] == pytest.approx((upper[-1] - lower[-1]) / middle[-1] * 100)


def test_macd_histogram_is_line_minus_signal() -> None:
    line, signal, hist = ta.macd(ohlcv(80)[3])
    assert hist[-1] == pytest.approx(line[-1] - signal[-1])


def test_latest_indicators_has_everything_on_enough_data() -> None:
    values = ta.latest_indicators(*ohlcv(288))
    expected = {"rsi", "macd", "macd_signal", "macd_hist", "adx", "plus_di", "minus_di", "atr", "atr_pct",
                "bb_upper", "bb_middle", "bb_lower", "bb_pct_b", "bb_width", "stoch_k", "stoch_d", "obv",
                "ema_9", "ema_21", "ema_50", "ema_200", "ema_21_slope_pct", "close"}
    assert expected <= set(values)
    assert all(math.isfinite(v) for v in values.values())


def test_latest_indicators_matches_the_series_functions() -> None:
    o, h, low, c, v = ohlcv(120)
    values = ta.latest_indicators(o, h, low, c, v)
    assert values["rsi"] == ta.rsi(c)[-1]
    assert values["adx"] == ta.adx(h, low, c)[-1]
    assert values["stoch_d"] == ta.stochastic(h, low, c)[1][-1]
    assert values["bb_pct_b"] == pytest.approx(ta.bollinger(c)[3][-1])
    assert values["atr_pct"] == pytest.approx(ta.atr(h, low, c)[-1] / c[-1] * 100)


@pytest.mark.parametrize("n", [0, 1, 5, 15, 20, 30, 40, 199])
def test_short_data_omits_what_cannot_be_computed(n: int) -> None:
    values = ta.latest_indicators(*ohlcv(n))
    assert all(math.isfinite(v) for v in values.values())
    assert ("ema_200" in values) is False
    assert ("macd_hist" in values) == (n >= 34)


def test_flat_prices_do_not_produce_nan() -> None:
    flat = np.full(100, 5.0)
    values = ta.latest_indicators(flat, flat, flat, flat, np.zeros(100))
    assert all(math.isfinite(v) for v in values.values())
    assert values["bb_pct_b"] == 0.5
