"""Technical indicators as pure functions on float64 numpy arrays (TA-Lib underneath)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import talib

from app.domain.values import Candle

FloatArray = np.ndarray


def _raw(name: str) -> Callable[..., Any]:
    """TA-Lib's compiled function without its pandas/polars wrapper, which costs more than the maths here."""
    return inspect.unwrap(getattr(talib, name))


_RSI, _MACD, _ADX, _PLUS_DI, _MINUS_DI = _raw("RSI"), _raw("MACD"), _raw("ADX"), _raw("PLUS_DI"), _raw("MINUS_DI")
_ATR, _BBANDS, _STOCH, _OBV, _EMA = _raw("ATR"), _raw("BBANDS"), _raw("STOCH"), _raw("OBV"), _raw("EMA")
_MAX, _MIN = _raw("MAX"), _raw("MIN")

RSI_PERIOD = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
ADX_PERIOD = 14
ATR_PERIOD = 14
BB_PERIOD, BB_STDDEV = 20, 2.0
STOCH_K, STOCH_SLOW_K, STOCH_D = 14, 3, 3
EMA_PERIODS = (9, 21, 50, 200)
SLOPE_BARS = 5  # EMA21 slope is measured over this many bars


def candle_arrays(candles: Sequence[Candle]) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """Open, high, low, close and volume as float64 arrays (the one place where Decimal becomes float)."""
    n = len(candles)
    fields = ("open", "high", "low", "close", "volume")
    out = tuple(np.fromiter((float(getattr(c, f)) for c in candles), dtype=np.float64, count=n) for f in fields)
    return out  # type: ignore[return-value]


def rsi(close: FloatArray, period: int = RSI_PERIOD) -> FloatArray:
    return _RSI(close, timeperiod=period)


def macd(close: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """MACD line, signal line and histogram."""
    return _MACD(close, fastperiod=MACD_FAST, slowperiod=MACD_SLOW, signalperiod=MACD_SIGNAL)


def adx(high: FloatArray, low: FloatArray, close: FloatArray, period: int = ADX_PERIOD) -> FloatArray:
    return _ADX(high, low, close, timeperiod=period)


def plus_di(high: FloatArray, low: FloatArray, close: FloatArray, period: int = ADX_PERIOD) -> FloatArray:
    return _PLUS_DI(high, low, close, timeperiod=period)


def minus_di(high: FloatArray, low: FloatArray, close: FloatArray, period: int = ADX_PERIOD) -> FloatArray:
    return _MINUS_DI(high, low, close, timeperiod=period)


def atr(high: FloatArray, low: FloatArray, close: FloatArray, period: int = ATR_PERIOD) -> FloatArray:
    return _ATR(high, low, close, timeperiod=period)


def bollinger(close: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """Upper, middle, lower band, %b (0 at lower, 1 at upper) and width in % of the middle band."""
    upper, middle, lower = _BBANDS(close, timeperiod=BB_PERIOD, nbdevup=BB_STDDEV, nbdevdn=BB_STDDEV, matype=0)
    span = upper - lower
    with np.errstate(divide="ignore", invalid="ignore"):
        pct_b = np.where(span > 0, (close - lower) / span, 0.5)
        width = span / middle * 100.0
    return upper, middle, lower, pct_b, width


def stochastic(high: FloatArray, low: FloatArray, close: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Slow stochastic %K and %D (14, 3, 3, simple averages)."""
    return _STOCH(
        high, low, close, fastk_period=STOCH_K, slowk_period=STOCH_SLOW_K, slowk_matype=0,
        slowd_period=STOCH_D, slowd_matype=0,
    )


def obv(close: FloatArray, volume: FloatArray) -> FloatArray:
    return _OBV(close, volume)


def ema(close: FloatArray, period: int) -> FloatArray:
    return _EMA(close, timeperiod=period)


def rolling_max(values: FloatArray, window: int) -> FloatArray:
    """Maximum of the trailing `window` values (NaN until the window is full)."""
    return _MAX(values, timeperiod=window)


def rolling_min(values: FloatArray, window: int) -> FloatArray:
    return _MIN(values, timeperiod=window)


def _put(out: dict[str, float], name: str, series: FloatArray) -> None:
    """Store the last value if it is a finite number; indicators without enough data are simply left out."""
    if len(series):
        value = float(series[-1])
        if math.isfinite(value):
            out[name] = value


def _trend_indicators(out: dict[str, float], high: FloatArray, low: FloatArray, close: FloatArray) -> None:
    n = len(close)
    if n > 2 * ADX_PERIOD:
        _put(out, "adx", adx(high, low, close))
        _put(out, "plus_di", plus_di(high, low, close))
        _put(out, "minus_di", minus_di(high, low, close))
    for period in EMA_PERIODS:
        if n >= period:
            series = ema(close, period)
            _put(out, f"ema_{period}", series)
            if period == 21 and n >= period + SLOPE_BARS:
                _put(out, "ema_21_slope_pct", (series[-1:] / series[-1 - SLOPE_BARS] - 1.0) * 100.0)


def _momentum_indicators(out: dict[str, float], high: FloatArray, low: FloatArray, close: FloatArray) -> None:
    n = len(close)
    if n > RSI_PERIOD:
        _put(out, "rsi", rsi(close))
    if n >= MACD_SLOW + MACD_SIGNAL - 1:
        line, signal, hist = macd(close)
        _put(out, "macd", line)
        _put(out, "macd_signal", signal)
        _put(out, "macd_hist", hist)
    if n >= STOCH_K + STOCH_SLOW_K + STOCH_D - 2:
        k, d = stochastic(high, low, close)
        _put(out, "stoch_k", k)
        _put(out, "stoch_d", d)


def _volatility_indicators(out: dict[str, float], high: FloatArray, low: FloatArray, close: FloatArray) -> None:
    n = len(close)
    if n > ATR_PERIOD:
        _put(out, "atr", atr(high, low, close))
        if "atr" in out and close[-1] > 0:
            out["atr_pct"] = out["atr"] / float(close[-1]) * 100.0
    if n >= BB_PERIOD:
        upper, middle, lower = _BBANDS(close, timeperiod=BB_PERIOD, nbdevup=BB_STDDEV, nbdevdn=BB_STDDEV, matype=0)
        _put_bollinger(out, float(upper[-1]), float(middle[-1]), float(lower[-1]), float(close[-1]))


def _put_bollinger(out: dict[str, float], upper: float, middle: float, lower: float, close: float) -> None:
    """The same %b and width as `bollinger`, for the last bar only (whole arrays cost more than the bands)."""
    if not all(math.isfinite(x) for x in (upper, middle, lower)):
        return
    out.update(bb_upper=upper, bb_middle=middle, bb_lower=lower)
    span = upper - lower
    out["bb_pct_b"] = (close - lower) / span if span > 0 else 0.5
    if middle != 0:
        out["bb_width"] = span / middle * 100.0


def latest_indicators(
    open_: FloatArray, high: FloatArray, low: FloatArray, close: FloatArray, volume: FloatArray
) -> dict[str, float]:
    """The last value of every indicator that the data allows; never contains NaN."""
    out: dict[str, float] = {}
    if len(close) == 0:
        return out
    _put(out, "close", close)
    _put(out, "open", open_)
    _put(out, "volume", volume)
    _trend_indicators(out, high, low, close)
    _momentum_indicators(out, high, low, close)
    _volatility_indicators(out, high, low, close)
    if len(close) > 1:
        _put(out, "obv", obv(close, volume))
    return out
