"""Compiled (numba) loops for `batch_latest_indicators` (one window at a time, TA-Lib's C steps in TA-Lib's order)
and for the support/resistance zones (`sr_zones`, the same arithmetic as SupportResistanceDetector's numpy code).

The same replay as the vectorised numpy code in app.indicators.batch_replay (whose docstrings say where each formula
comes from), without one temporary array per step: about six times faster per window. `fused` selects TA-Lib's
FMA build, where `(x - prev) * k + prev` and ATR's `prev * c1 + x * c2` are rounded once (the hardware fused
multiply-add, through LLVM's fma intrinsic); every other operation is a plain IEEE double operation, as in C,
and division by zero gives inf/NaN as it does there (`error_model="numpy"`). Bollinger bands (`bollinger_windows`)
follow TA-Lib 0.8's re-centred running sums, which the numpy replay does not (it calls TA-Lib per window).
Compiled code is cached on disk next to this module.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from app.indicators import technical as ta  # its periods, read as constants when a loop compiles
from app.indicators.indicator_row import COLUMN

# Where each value goes in a result row (INDICATOR_NAMES order; batch imports this module only when called)
CLOSE, OPEN, VOLUME, ADX, PLUS_DI, MINUS_DI = (COLUMN[n] for n in ("close", "open", "volume", "adx", "plus_di", "minus_di"))
EMA_9, EMA_21, EMA_21_SLOPE, EMA_50, EMA_200 = (COLUMN[n] for n in ("ema_9", "ema_21", "ema_21_slope_pct", "ema_50",
                                                                    "ema_200"))
RSI, MACD, MACD_SIGNAL_COL, MACD_HIST = (COLUMN[n] for n in ("rsi", "macd", "macd_signal", "macd_hist"))
STOCH_K_COL, STOCH_D_COL, ATR, ATR_PCT, OBV = (COLUMN[n] for n in ("stoch_k", "stoch_d", "atr", "atr_pct", "obv"))

P9, P21, P50, P200 = ta.EMA_PERIODS

_JIT: dict[str, Any] = {"cache": True, "error_model": "numpy", "nogil": True}


@intrinsic
def _fma(typingctx: Any, a: Any, b: Any, c: Any) -> Any:
    """a * b + c rounded once."""
    signature = types.float64(types.float64, types.float64, types.float64)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.fma(*args)

    return signature, codegen


@njit(**_JIT)
def _mul_add(a: float, b: float, c: float, fused: bool) -> float:
    return _fma(a, b, c) if fused else a * b + c  # type: ignore[call-arg]  # numba supplies typingctx


@njit(**_JIT)
def _sum(x: np.ndarray, begin: int, end: int) -> float:
    total = 0.0
    for j in range(begin, end):
        total += x[j]
    return total


@njit(**_JIT)
def _emas(row: np.ndarray, close: np.ndarray, length: int, fused: bool) -> None:
    """The four EMAs in one pass over the bars: each chain takes TA_EMA's steps (seeded with the mean of its first
    `period` bars), but side by side the processor overlaps them (one after the other, each step waited for the
    previous one: 2.2 -> 0.7 us a 288-bar window); EMA21 is also read SLOPE_BARS bars before the end, for its
    slope. The periods' order is the columns' (EMA_9 ... EMA_200)."""
    if length < P9:
        return
    last = length - 1
    k9, k21, k50, k200 = 2.0 / float(P9 + 1), 2.0 / float(P21 + 1), 2.0 / float(P50 + 1), 2.0 / float(P200 + 1)
    e9 = _sum(close, 0, P9) / float(P9)
    e21 = _sum(close, 0, P21) / float(P21) if length >= P21 else 0.0
    e50 = _sum(close, 0, P50) / float(P50) if length >= P50 else 0.0
    e200 = _sum(close, 0, P200) / float(P200) if length >= P200 else 0.0
    then = last - ta.SLOPE_BARS
    e21_then = e21  # the seed when `then` is EMA21's first bar
    for j in range(P9, length):
        x = close[j]
        e9 = _mul_add(x - e9, k9, e9, fused)
        if j >= P21:
            e21 = _mul_add(x - e21, k21, e21, fused)
            if j == then:
                e21_then = e21
            if j >= P50:
                e50 = _mul_add(x - e50, k50, e50, fused)
                if j >= P200:
                    e200 = _mul_add(x - e200, k200, e200, fused)
    row[EMA_9] = e9
    if length >= P21:
        row[EMA_21] = e21
        if length >= P21 + ta.SLOPE_BARS:
            row[EMA_21_SLOPE] = (e21 / e21_then - 1.0) * 100.0
    if length >= P50:
        row[EMA_50] = e50
    if length >= P200:
        row[EMA_200] = e200


@njit(**_JIT)
def _macd(row: np.ndarray, close: np.ndarray, length: int, fused: bool) -> None:
    fast_k, slow_k, signal_k = 2.0 / float(ta.MACD_FAST + 1), 2.0 / float(ta.MACD_SLOW + 1), 2.0 / float(ta.MACD_SIGNAL + 1)
    skip = ta.MACD_SLOW - ta.MACD_FAST
    slow = _sum(close, 0, skip)
    fast = 0.0
    for j in range(skip, ta.MACD_SLOW):
        fast += close[j]
        slow += close[j]
    slow /= float(ta.MACD_SLOW)
    fast /= float(ta.MACD_FAST)
    signal = 0.0 + (fast - slow)
    macd = fast - slow
    first_out = ta.MACD_SLOW + ta.MACD_SIGNAL - 2
    for j in range(ta.MACD_SLOW, length):
        fast = _mul_add(close[j] - fast, fast_k, fast, fused)
        slow = _mul_add(close[j] - slow, slow_k, slow, fused)
        macd = fast - slow
        if j < first_out:
            signal += macd
        elif j == first_out:
            signal += macd
            signal /= float(ta.MACD_SIGNAL)
        else:
            signal = _mul_add(macd - signal, signal_k, signal, fused)
    row[MACD] = macd
    row[MACD_SIGNAL_COL] = signal
    row[MACD_HIST] = macd - signal


@njit(**_JIT)
def _rsi(row: np.ndarray, gain: np.ndarray, loss: np.ndarray, length: int) -> None:
    up = _sum(gain, 1, ta.RSI_PERIOD + 1)
    down = _sum(loss, 1, ta.RSI_PERIOD + 1)
    scale = 1.0 / float(ta.RSI_PERIOD)
    keep = float(ta.RSI_PERIOD - 1)
    down *= scale
    up *= scale
    for j in range(ta.RSI_PERIOD + 1, length):
        down *= keep
        up *= keep
        down += loss[j]
        up += gain[j]
        down *= scale
        up *= scale
    total = up + down
    row[RSI] = 0.0 if total == 0.0 else 100.0 * (up / total)


@njit(**_JIT)
def _directional(row: np.ndarray, plus_dm: np.ndarray, minus_dm: np.ndarray, true_range: np.ndarray,
                 length: int) -> None:
    p = ta.ADX_PERIOD
    plus, minus, tr = _sum(plus_dm, 1, p), _sum(minus_dm, 1, p), _sum(true_range, 1, p)
    sum_dx = 0.0
    adx = 0.0
    for j in range(p, length):
        minus = minus - minus / float(p) + minus_dm[j]
        plus = plus - plus / float(p) + plus_dm[j]
        tr = tr - tr / float(p) + true_range[j]
        minus_di = 100.0 * (minus / tr)
        plus_di = 100.0 * (plus / tr)
        total = minus_di + plus_di
        dx = abs(minus_di - plus_di) / total * 100.0
        valid = not (tr == 0.0 or total == 0.0)
        if j < 2 * p:
            if valid:
                sum_dx += dx
            if j == 2 * p - 1:
                adx = sum_dx / float(p)
        elif valid:
            adx = (adx * float(p - 1) + dx) / float(p)
    row[ADX] = adx
    row[PLUS_DI] = 0.0 if tr == 0.0 else 100.0 * (plus / tr)
    row[MINUS_DI] = 0.0 if tr == 0.0 else 100.0 * (minus / tr)


@njit(**_JIT)
def _atr(row: np.ndarray, true_range: np.ndarray, close_last: float, length: int, fused: bool) -> None:
    prev = _sum(true_range, 1, ta.ATR_PERIOD + 1) / float(ta.ATR_PERIOD)
    c1 = float(ta.ATR_PERIOD - 1) / float(ta.ATR_PERIOD)
    c2 = 1.0 - c1
    for j in range(ta.ATR_PERIOD + 1, length):
        prev = _mul_add(prev, c1, true_range[j] * c2, fused)
    row[ATR] = prev
    row[ATR_PCT] = prev / close_last * 100.0 if close_last > 0 else np.nan


@njit(**_JIT)
def _stochastic(row: np.ndarray, fast: np.ndarray, length: int) -> None:
    first = ta.STOCH_K - 1
    k_total = _sum(fast, first, first + ta.STOCH_SLOW_K - 1)
    slow = np.empty(ta.STOCH_D)
    first_slow = first + ta.STOCH_SLOW_K - 1
    first_d = first_slow + ta.STOCH_D - 1
    d_total = 0.0
    d = np.nan
    for j in range(first_slow, length):
        k_total += fast[j]
        slow[j % ta.STOCH_D] = k_total / float(ta.STOCH_SLOW_K)
        k_total -= fast[j - ta.STOCH_SLOW_K + 1]
        d_total += slow[j % ta.STOCH_D]
        if j >= first_d:
            d = d_total / float(ta.STOCH_D)
            d_total -= slow[(j + 1) % ta.STOCH_D]
    row[STOCH_K_COL] = slow[(length - 1) % ta.STOCH_D]
    row[STOCH_D_COL] = d


@njit(**_JIT)
def fill_windows(out: np.ndarray, starts: np.ndarray, length: int, fused: bool, open_: np.ndarray,
                 close: np.ndarray, volume: np.ndarray, true_range: np.ndarray, plus_dm: np.ndarray,
                 minus_dm: np.ndarray, gain: np.ndarray, loss: np.ndarray, signed_volume: np.ndarray,
                 fast_k: np.ndarray) -> None:
    """Row i of `out` (NaN-filled) from the window starting at bar starts[i]: every indicator but Bollinger's."""
    last = length - 1
    for i in range(len(starts)):
        s = starts[i]
        stop = s + length
        row = out[i]
        window_close = close[s:stop]
        row[CLOSE] = close[s + last]
        row[OPEN] = open_[s + last]
        row[VOLUME] = volume[s + last]
        if length > 2 * ta.ADX_PERIOD:
            _directional(row, plus_dm[s:stop], minus_dm[s:stop], true_range[s:stop], length)
        _emas(row, window_close, length, fused)
        if length > ta.RSI_PERIOD:
            _rsi(row, gain[s:stop], loss[s:stop], length)
        if length >= ta.MACD_SLOW + ta.MACD_SIGNAL - 1:
            _macd(row, window_close, length, fused)
        if length >= ta.STOCH_K + ta.STOCH_SLOW_K + ta.STOCH_D - 2:
            _stochastic(row, fast_k[s:stop], length)
        if length > ta.ATR_PERIOD:
            _atr(row, true_range[s:stop], close[s + last], length, fused)
        if length > 1:
            obv = volume[s]
            for j in range(s + 1, stop):
                obv += signed_volume[j]
            row[OBV] = obv


@njit(**_JIT)
def _mean(x: np.ndarray, begin: int, end: int) -> float:
    """sum(x[begin:end]) / (end - begin) as Python computes it on floats: left to right from 0.0."""
    return _sum(x, begin, end) / float(end - begin)


@njit(**_JIT)
def sr_zones(ordered: np.ndarray, high: np.ndarray, low: np.ndarray, threshold: float) -> tuple[
        np.ndarray, np.ndarray, np.ndarray]:
    """SupportResistanceDetector.support_resistance_zones after the pivots, for pivot prices already sorted (stable, no NaN):
    levels (clusters within the threshold of their first price, averaged), touches per level and strength.
    A bar touches a level when the nearer of its high and low (fmin: a NaN side never hides the other) lies
    within level * threshold; strength weighs the touches (up to 6) and the last touch's bar (the last bar when
    none), rounded to 4 places half to even as Python's round does."""
    count_prices = len(ordered)
    levels = np.empty(count_prices)
    count = 0
    start, limit = 0, ordered[0] * (1.0 + threshold)
    for i in range(1, count_prices):
        if ordered[i] > limit:
            levels[count] = _mean(ordered, start, i)
            count += 1
            start, limit = i, ordered[i] * (1.0 + threshold)
    levels[count] = _mean(ordered, start, count_prices)
    count += 1
    n = len(high)
    span = max(n - 1, 1)
    touches = np.zeros(count, np.int64)
    strengths = np.empty(count)
    for k in range(count):
        level = levels[k]
        reach = level * threshold
        hits, last = 0, -1
        for j in range(n):
            to_high, to_low = abs(level - high[j]), abs(level - low[j])
            nearest = to_low if np.isnan(to_high) else (to_high if np.isnan(to_low) else min(to_high, to_low))
            if nearest <= reach:
                hits += 1
                last = j
        if last < 0:
            last = n - 1
        touches[k] = hits
        strength = (hits / 6.0 if hits < 6 else 1.0) * 0.7 + last / span * 0.3
        strengths[k] = np.rint(strength * 10000.0) / 10000.0
    return levels[:count], touches, strengths


@njit(**_JIT)
def _bollinger_last(x: np.ndarray, period: int) -> tuple[float, float]:
    """TA_BBANDS with an SMA middle band at the last bar of x (len(x) >= period): (middle, standard deviation).

    The installed TA-Lib (0.8) computes the deviation from running sums of (x - shift) and (x - shift)**2, in
    the same pass as the SMA's running sum; it rebuilds the sums (two passes over the current window, the shift
    re-centred on its mean) when the variance falls below 1e-6 of the mean squared deviation, when the value
    leaving the window outweighs the rest a million times, or every 32 periods; a variance at or below zero
    gives a deviation of zero. No step here is fused (tests against TA-Lib on real and random windows)."""
    look = period - 1
    inv = 1.0 / float(period)
    shift = x[0]
    total, dev1, dev2 = 0.0, 0.0, 0.0
    for j in range(look):
        total += x[j]
        t = x[j] - shift
        dev1 += t
        dev2 += t * t
    countdown = 32 * period
    middle, variance = 0.0, 0.0
    for i in range(look, len(x)):
        total += x[i]
        t = x[i] - shift
        dev1 += t
        dev2 += t * t
        mean = dev1 * inv
        variance = dev2 * inv - mean * mean
        middle = total / float(period)
        total -= x[i - look]  # the bar leaving the window
        t = x[i - look] - shift
        dev1 -= t
        leaving = t * t
        dev2 -= leaving
        countdown -= 1
        if variance < 0.000001 * (dev2 * inv) or leaving > 1000000.0 * dev2 or countdown <= 0:
            countdown = 32 * period
            first = i - look
            shift = _sum(x, first, i + 1) * inv
            dev1, dev2 = 0.0, 0.0
            for j in range(first, i + 1):
                t = x[j] - shift
                dev1 += t
                dev2 += t * t
            mean = dev1 * inv
            variance = dev2 * inv - mean * mean
            t = x[first] - shift
            dev1 -= t
            dev2 -= t * t
    return middle, np.sqrt(variance) if variance > 0.0 else 0.0


@njit(**_JIT)
def bollinger_windows(bands: np.ndarray, close: np.ndarray, starts: np.ndarray, length: int, period: int,
                      deviations: float) -> None:
    """bands[0..2, i] = upper, middle and lower band at the last bar of the window starting at bar starts[i]
    (`deviations` is 2: the product with the deviation is exact, so no fused multiply-add could change it)."""
    for i in range(len(starts)):
        s = starts[i]
        middle, deviation = _bollinger_last(close[s:s + length], period)
        width = deviation * deviations
        bands[0, i] = middle + width
        bands[1, i] = middle
        bands[2, i] = middle - width


@njit(**_JIT)
def sr_zone_windows(high: np.ndarray, low: np.ndarray, tops: np.ndarray, bottoms: np.ndarray, starts: np.ndarray,
                    length: int, pivot_window: int, threshold: float) -> tuple[
                        np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """sr_zones for the windows of `length` bars starting at `starts`: counts[k] zones in row k of levels, touches
    and strengths. tops[i] / bottoms[i] say whether bar i of the series is a pivot (the extreme of the 2w+1 bars
    centred on it): within a window that holds for its bars w .. length-w-1, whose pivots are sorted (any order
    of equal prices gives the same clusters and sums) and scored against the window's bars."""
    count = len(starts)
    most = max(2 * (length - 2 * pivot_window), 1)
    counts = np.zeros(count, np.int64)
    levels = np.empty((count, most))
    touches = np.zeros((count, most), np.int64)
    strengths = np.empty((count, most))
    prices = np.empty(most)
    for k in range(count):
        s = starts[k]
        found = 0
        for i in range(s + pivot_window, s + length - pivot_window):
            if tops[i]:
                prices[found] = high[i]
                found += 1
        for i in range(s + pivot_window, s + length - pivot_window):
            if bottoms[i]:
                prices[found] = low[i]
                found += 1
        if found == 0:
            continue
        window_levels, window_touches, window_strengths = sr_zones(np.sort(prices[:found]), high[s:s + length],
                                                                   low[s:s + length], threshold)
        zones = len(window_levels)
        counts[k] = zones
        levels[k, :zones] = window_levels
        touches[k, :zones] = window_touches
        strengths[k, :zones] = window_strengths
    return counts, levels, touches, strengths
