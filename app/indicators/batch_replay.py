"""The numpy replay of TA-Lib's C loops, one vector lane per window: the compiled loops' fallback and reference."""

from __future__ import annotations

import numpy as np

from app.indicators.batch_bars import Bars, Windows
from app.indicators.indicator_row import COLUMN
from app.indicators.talib_rounding import mul_add
from app.indicators.technical import (
    _BBANDS,
    ADX_PERIOD,
    ATR_PERIOD,
    BB_PERIOD,
    BB_STDDEV,
    EMA_PERIODS,
    MACD_FAST,
    MACD_SIGNAL,
    MACD_SLOW,
    RSI_PERIOD,
    SLOPE_BARS,
    STOCH_D,
    STOCH_K,
    STOCH_SLOW_K,
)

# Every loop below replays one TA-Lib C function step by step (same operations, same order) on a vector holding
# one lane per window; `x[j]` is the j-th bar of every window. Only the last value of each indicator is kept.


def _is_zero(x: np.ndarray) -> np.ndarray:
    """TA-Lib 0.8's zero guard in RSI and DI/DX: exactly zero (0.6's TA_IS_ZERO band of 1e-8 is gone: probed,
    a smoothed true range of 1e-12 still yields +DI 100)."""
    return x == 0.0


def _running_sum(x: np.ndarray, begin: int, end: int, n: int) -> np.ndarray:
    """0.0 + x[begin] + ... + x[end - 1], added left to right like TA-Lib's seed loops."""
    total = np.zeros(n)
    for j in range(begin, end):
        total += x[j]
    return total


def _ema_path(x: np.ndarray, period: int, marks: tuple[int, ...]) -> list[np.ndarray]:
    """TA_EMA (default compatibility) over each window, its values at the rows in `marks` (each >= period - 1)."""
    k = 2.0 / float(period + 1)
    prev = _running_sum(x, 0, period, x.shape[1]) / float(period)
    tmp = np.empty_like(prev)
    found = {period - 1: prev.copy()} if period - 1 in marks else {}
    for j in range(period, max(marks) + 1):
        _ema_step(x[j], prev, k, tmp)
        if j in marks:
            found[j] = prev.copy()
    return [found[mark] for mark in marks]


def _emas(out: np.ndarray, close: np.ndarray, length: int) -> None:
    last = length - 1
    for period in EMA_PERIODS:
        if length < period:
            continue
        if period == 21 and length >= period + SLOPE_BARS:
            before, now = _ema_path(close, period, (last - SLOPE_BARS, last))
            out[:, COLUMN["ema_21"]] = now
            with np.errstate(divide="ignore", invalid="ignore"):
                out[:, COLUMN["ema_21_slope_pct"]] = (now / before - 1.0) * 100.0
        else:
            out[:, COLUMN[f"ema_{period}"]] = _ema_path(close, period, (last,))[0]


def _macd(out: np.ndarray, close: np.ndarray, length: int) -> None:
    """TA_MACD: fast and slow EMA seeds end on the same bar, the signal EMA is seeded from the first MACD values."""
    n = close.shape[1]
    fast_k, slow_k, signal_k = (2.0 / float(p + 1) for p in (MACD_FAST, MACD_SLOW, MACD_SIGNAL))
    skip = MACD_SLOW - MACD_FAST
    slow = _running_sum(close, 0, skip, n)
    fast = np.zeros(n)
    for j in range(skip, MACD_SLOW):
        fast += close[j]
        slow += close[j]
    slow /= float(MACD_SLOW)
    fast /= float(MACD_FAST)
    signal = np.zeros(n)
    signal += fast - slow
    tmp = np.empty(n)
    macd = fast - slow
    first_out = MACD_SLOW + MACD_SIGNAL - 2
    for j in range(MACD_SLOW, length):
        _ema_step(close[j], fast, fast_k, tmp)
        _ema_step(close[j], slow, slow_k, tmp)
        np.subtract(fast, slow, out=macd)
        if j < first_out:
            signal += macd
        elif j == first_out:
            signal += macd
            signal /= float(MACD_SIGNAL)
        else:
            _ema_step(macd, signal, signal_k, tmp)
    out[:, COLUMN["macd"]] = macd
    out[:, COLUMN["macd_signal"]] = signal
    out[:, COLUMN["macd_hist"]] = macd - signal


def _ema_step(x: np.ndarray, prev: np.ndarray, k: float, tmp: np.ndarray) -> None:
    """prev = (x - prev) * k + prev, in place."""
    np.subtract(x, prev, out=tmp)
    prev[...] = mul_add(tmp, k, prev)


def _wilder(x: np.ndarray, period: int, length: int) -> np.ndarray:
    """TA_ATR's averaging: mean of bars 1..period, then (prev * (period-1) + x) / period, which TA-Lib's
    fast-math build evaluates as prev * c1 + x * c2 with c1 = (period-1)/period and c2 = 1 - c1."""
    prev = _running_sum(x, 1, period + 1, x.shape[1]) / float(period)
    c1 = float(period - 1) / float(period)
    c2 = 1.0 - c1
    for j in range(period + 1, length):
        prev = mul_add(prev, c1, x[j] * c2, near_c=False)
    return prev


def _rsi(out: np.ndarray, bars: Bars, win: Windows) -> None:
    n = win.n
    gain, loss = win.rows(bars.gain), win.rows(bars.loss)
    up, down = _running_sum(gain, 1, RSI_PERIOD + 1, n), _running_sum(loss, 1, RSI_PERIOD + 1, n)
    scale = 1.0 / float(RSI_PERIOD)  # TA-Lib's fast-math build multiplies by the reciprocal
    down *= scale
    up *= scale
    keep = float(RSI_PERIOD - 1)
    for j in range(RSI_PERIOD + 1, win.length):
        down *= keep
        up *= keep
        down += loss[j]
        up += gain[j]
        down *= scale
        up *= scale
    total = up + down
    with np.errstate(divide="ignore", invalid="ignore"):
        out[:, COLUMN["rsi"]] = np.where(_is_zero(total), 0.0, 100.0 * (up / total))


def _directional(out: np.ndarray, bars: Bars, win: Windows) -> None:
    """TA_ADX, TA_PLUS_DI and TA_MINUS_DI: the three walk the same smoothed +DM, -DM and TR."""
    p, n = ADX_PERIOD, win.n
    plus_dm, minus_dm, true_range = win.rows(bars.plus_dm), win.rows(bars.minus_dm), win.rows(bars.true_range)
    plus, minus, tr = (_running_sum(a, 1, p, n) for a in (plus_dm, minus_dm, true_range))
    sum_dx, adx = np.zeros(n), np.zeros(n)
    tmp, dx = np.empty(n), np.empty(n)
    for j in range(p, win.length):
        for state, step in ((minus, minus_dm), (plus, plus_dm), (tr, true_range)):
            np.divide(state, float(p), out=tmp)
            state -= tmp
            state += step[j]
        valid = _dx(plus, minus, tr, dx)
        if j < 2 * p:
            np.add(sum_dx, dx, out=sum_dx, where=valid)
            if j == 2 * p - 1:
                np.divide(sum_dx, float(p), out=adx)
        else:
            np.copyto(adx, (adx * float(p - 1) + dx) / float(p), where=valid)
    with np.errstate(divide="ignore", invalid="ignore"):
        flat = _is_zero(tr)
        out[:, COLUMN["adx"]] = adx
        out[:, COLUMN["plus_di"]] = np.where(flat, 0.0, 100.0 * (plus / tr))
        out[:, COLUMN["minus_di"]] = np.where(flat, 0.0, 100.0 * (minus / tr))


def _dx(plus: np.ndarray, minus: np.ndarray, tr: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """DX into `dx`; returns where TA-Lib uses it (TR and the DI sum not zero, see `_is_zero`)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        minus_di = 100.0 * (minus / tr)
        plus_di = 100.0 * (plus / tr)
        total = minus_di + plus_di
        np.subtract(minus_di, plus_di, out=dx)
        np.abs(dx, out=dx)
        dx /= total
        dx *= 100.0
    return ~(_is_zero(tr) | _is_zero(total))


def _atr(out: np.ndarray, bars: Bars, win: Windows, close_last: np.ndarray) -> None:
    atr = _wilder(win.rows(bars.true_range), ATR_PERIOD, win.length)
    out[:, COLUMN["atr"]] = atr
    with np.errstate(divide="ignore", invalid="ignore"):
        out[:, COLUMN["atr_pct"]] = np.where(close_last > 0, atr / close_last * 100.0, np.nan)


def bollinger(out: np.ndarray, bars: Bars, win: Windows, close_last: np.ndarray) -> None:
    """TA_BBANDS per window: the installed build re-centres its running sums of x and x*x (shifted sums with a
    cancellation guard that restarts them); only the compiled loops replicate that (kernels.bollinger_windows),
    so here each window calls TA-Lib."""
    starts = win.starts
    bands = np.empty((3, win.n))
    for i, start in enumerate(starts.tolist()):
        upper, middle, lower = _BBANDS(bars.close[start:start + win.length], timeperiod=BB_PERIOD,
                                       nbdevup=BB_STDDEV, nbdevdn=BB_STDDEV, matype=0)
        bands[0, i], bands[1, i], bands[2, i] = upper[-1], middle[-1], lower[-1]
    put_bollinger(out, bands[0], bands[1], bands[2], close_last)


def put_bollinger(out: np.ndarray, upper: np.ndarray, middle: np.ndarray, lower: np.ndarray,
                   close: np.ndarray) -> None:
    finite = np.isfinite(upper) & np.isfinite(middle) & np.isfinite(lower)
    span = upper - lower
    with np.errstate(divide="ignore", invalid="ignore"):
        pct_b = np.where(span > 0, (close - lower) / span, 0.5)
        width = np.where(middle != 0, span / middle * 100.0, np.nan)
    for name, values in (("bb_upper", upper), ("bb_middle", middle), ("bb_lower", lower), ("bb_pct_b", pct_b),
                         ("bb_width", width)):
        out[:, COLUMN[name]] = np.where(finite, values, np.nan)


def _stochastic(out: np.ndarray, bars: Bars, win: Windows) -> None:
    """TA_STOCH: %K is the SMA(3) of raw %K, %D the SMA(3) of %K, both as running totals (add, then subtract)."""
    n, first = win.n, STOCH_K - 1
    fast = win.rows(bars.fast_k)
    k_total = _running_sum(fast, first, first + STOCH_SLOW_K - 1, n)
    slow = np.empty((STOCH_D, n))  # ring of the last STOCH_D slow %K values: row j % STOCH_D holds bar j
    first_slow = first + STOCH_SLOW_K - 1
    first_d = first_slow + STOCH_D - 1
    d_total = np.zeros(n)
    for j in range(first_slow, win.length):
        k_total += fast[j]
        np.divide(k_total, float(STOCH_SLOW_K), out=slow[j % STOCH_D])
        k_total -= fast[j - STOCH_SLOW_K + 1]
        d_total += slow[j % STOCH_D]
        if j >= first_d:
            d = d_total / float(STOCH_D)
            d_total -= slow[(j + 1) % STOCH_D]
    out[:, COLUMN["stoch_k"]] = slow[(win.length - 1) % STOCH_D]
    out[:, COLUMN["stoch_d"]] = d


def _obv(out: np.ndarray, bars: Bars, win: Windows) -> None:
    step = win.rows(bars.signed_volume)
    obv = win.rows(bars.volume)[0].copy()
    for j in range(1, win.length):
        obv += step[j]
    out[:, COLUMN["obv"]] = obv


def fill(out: np.ndarray, bars: Bars, win: Windows) -> None:
    """Every indicator the window length allows, with the same length rules as latest_indicators."""
    length = win.length
    last = length - 1
    close = win.rows(bars.close)
    close_last = close[last]
    for name, series in (("close", bars.close), ("open", bars.open), ("volume", bars.volume)):
        out[:, COLUMN[name]] = win.rows(series)[last]
    if length > 2 * ADX_PERIOD:
        _directional(out, bars, win)
    _emas(out, close, length)
    if length > RSI_PERIOD:
        _rsi(out, bars, win)
    if length >= MACD_SLOW + MACD_SIGNAL - 1:
        _macd(out, close, length)
    if length >= STOCH_K + STOCH_SLOW_K + STOCH_D - 2:
        _stochastic(out, bars, win)
    if length > ATR_PERIOD:
        _atr(out, bars, win, close_last)
    if length >= BB_PERIOD:
        bollinger(out, bars, win, close_last)
    if length > 1:
        _obv(out, bars, win)

