"""`latest_indicators` for many equal-length windows at once, vectorised across windows and bit-identical to TA-Lib."""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
from collections.abc import Iterator
from types import ModuleType

import numpy as np
import talib
from numpy.lib.stride_tricks import sliding_window_view

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

# Every key latest_indicators can produce, in the order it inserts them.
INDICATOR_NAMES: tuple[str, ...] = (
    "close", "open", "volume", "adx", "plus_di", "minus_di", "ema_9", "ema_21", "ema_21_slope_pct", "ema_50",
    "ema_200", "rsi", "macd", "macd_signal", "macd_hist", "stoch_k", "stoch_d", "atr", "atr_pct", "bb_upper",
    "bb_middle", "bb_lower", "bb_pct_b", "bb_width", "obv",
)
COLUMN = {name: i for i, name in enumerate(INDICATOR_NAMES)}
DEFAULT_CHUNK = 16384  # measured: 1024 61 us, 4096 28 us, 8192 26 us, 16384 22 us per 288-bar window

# Every loop below replays one TA-Lib C function step by step (same operations, same order) on a vector holding
# one lane per window; `x[j]` is the j-th bar of every window. Only the last value of each indicator is kept.


class _Bars:
    """Per-bar inputs of the whole call, including the window-independent terms TA-Lib derives from two bars."""

    def __init__(self, open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
                 volume: np.ndarray) -> None:
        self.open, self.high, self.low, self.close, self.volume = open_, high, low, close, volume
        prev_close = np.concatenate(([close[0]], close[:-1]))
        prev_high = np.concatenate(([high[0]], high[:-1]))
        prev_low = np.concatenate(([low[0]], low[:-1]))
        self.true_range = _true_range(high, low, prev_close)
        self.plus_dm, self.minus_dm = _directional_moves(high, low, prev_high, prev_low)
        change = close - prev_close
        falling = change < 0.0
        self.gain = np.where(falling, 0.0, change)
        self.loss = np.where(falling, -change, 0.0)  # prevLoss -= change is prevLoss + (-change), exactly
        self.signed_volume = np.where(close > prev_close, volume, np.where(close < prev_close, -volume, 0.0))
        self.fast_k = _fast_k(high, low, close)


def _true_range(high: np.ndarray, low: np.ndarray, prev_close: np.ndarray) -> np.ndarray:
    """TRANGE: the greatest of high-low, |high-prev close|, |low-prev close| (a max, so the order is immaterial)."""
    return np.maximum(np.maximum(high - low, np.abs(high - prev_close)), np.abs(low - prev_close))


def _directional_moves(high: np.ndarray, low: np.ndarray, prev_high: np.ndarray,
                       prev_low: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The one-bar +DM and -DM with ADX's case rules; 0.0 where TA-Lib adds nothing."""
    diff_p = high - prev_high
    diff_m = prev_low - low
    minus = (diff_m > 0) & (diff_p < diff_m)
    plus = ~minus & (diff_p > 0) & (diff_p > diff_m)
    return np.where(plus, diff_p, 0.0), np.where(minus, diff_m, 0.0)


def _fast_k(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """STOCH's raw %K of the bar ending at each index (needs STOCH_K bars; earlier entries are never read)."""
    fast = np.zeros(len(close))
    if len(close) < STOCH_K:
        return fast
    highest = sliding_window_view(high, STOCH_K).max(axis=1)
    lowest = sliding_window_view(low, STOCH_K).min(axis=1)
    span = highest - lowest
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = 100.0 * ((close[STOCH_K - 1:] - lowest) / span)  # the installed TA-Lib's form (found by probing)
    fast[STOCH_K - 1:] = np.where(span != 0.0, raw, 0.0)
    return fast


class _Windows:
    """(length, n) views of per-bar arrays: row j is bar j of every window (a strided view when ends are consecutive)."""

    def __init__(self, ends: np.ndarray, length: int) -> None:
        self.n, self.length = len(ends), length
        self.first = int(ends[0]) - length + 1
        self.starts = ends - length + 1
        self.consecutive = bool(np.all(np.diff(ends) == 1))
        if not self.consecutive:
            self.index = (ends - length + 1)[None, :] + np.arange(length)[:, None]

    def rows(self, series: np.ndarray) -> np.ndarray:
        if self.consecutive:
            return sliding_window_view(series[self.first:self.first + self.n + self.length - 1], self.n)
        return series[self.index]


def _is_zero(x: np.ndarray) -> np.ndarray:
    """TA-Lib 0.8's zero guard in RSI and DI/DX: exactly zero (0.6's TA_IS_ZERO band of 1e-8 is gone: probed,
    a smoothed true range of 1e-12 still yields +DI 100)."""
    return x == 0.0


_SPLIT = 134217729.0  # 2**27 + 1, Dekker's splitter


def _split(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = a * _SPLIT
    high = c - (c - a)
    return high, a - high


def _fma(a: np.ndarray, b: float, c: np.ndarray) -> np.ndarray:
    """a * b + c with one rounding, like the FMA instruction TA-Lib's fma builds use (Boldo & Melquiond's
    emulation: exact product and sum, the low parts rounded to odd, then one rounding to nearest)."""
    p = a * b
    a_hi, a_lo = _split(a)
    b_hi, b_lo = _split(np.array(b))
    e = ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo  # a * b == p + e exactly
    s = c + p
    bb = s - c
    t = (c - (s - bb)) + (p - bb)  # c + p == s + t exactly
    v = t + e
    z = v - t
    err = (t - (v - z)) + (e - z)  # t + e == v + err exactly
    bits = v.view(np.int64)
    inexact_even = (err != 0.0) & ((bits & 1) == 0)
    step = np.where((err > 0.0) == (v > 0.0), 1, -1)
    v = (bits + np.where(inexact_even, step, 0)).view(np.float64)  # v rounded to odd
    return s + v


_EXPONENT = 0x7FF0000000000000
_MANTISSA = 0x000FFFFFFFFFFFFF
_TINY_HALF_ULP = 2.0**-900  # below it a_lo * b_lo may underflow and e be inexact


def _mul_add(a: np.ndarray, b: float, c: np.ndarray, near_c: bool = True) -> np.ndarray:
    """a * b + c as the installed TA-Lib build rounds it: fused on CPUs where it picked its FMA code. `near_c`:
    a * b is mostly far below c (EMA steps), so a cheap bound clears nearly every lane; otherwise (ATR's
    prev * c1 + x * c2, where the bound clears almost none) the product error is computed exactly."""
    return _fused_mul_add(a, b, c, near_c) if _fused() else a * b + c


def _fused_mul_add(a: np.ndarray, b: float, c: np.ndarray, near_c: bool = True) -> np.ndarray:
    """a * b + c rounded once: the plain sum where that is provably the same, `_fma` on the other lanes."""
    p = a * b
    s = c + p
    bb = s - c
    t = (c - (s - bb)) + (p - bb)  # c + p == s + t exactly; the exact a * b + c is s + t + e, e = a * b - p
    bits = s.view(np.int64)
    half_ulp = (bits & _EXPONENT).view(np.float64) * 2.0**-53
    # One rounding of s + t + e gives s again when |t + e| stays below half an ulp of s, unless s is a power of
    # two (its lower gap is half as wide); the other lanes get the exact emulation.
    if near_c:
        risky = (np.abs(t) + np.abs(p) * 2.0**-52 >= half_ulp) | ((bits & _MANTISSA) == 0)  # |e| <= |p| 2**-53
    else:
        risky = _product_error_risky(a, b, p, t, half_ulp) | ((bits & _MANTISSA) == 0)
    if risky.any():
        lanes = np.flatnonzero(risky)
        s[lanes] = _fma(a[lanes], b, c[lanes])
    return s


def _product_error_risky(a: np.ndarray, b: float, p: np.ndarray, t: np.ndarray, half_ulp: np.ndarray) -> np.ndarray:
    """Lanes where |t + e| may reach half an ulp, with e = a * b - p exact (Dekker): fl(t + e) is within 2**-53
    of t + e, hence the margin; NaN (overflowing splits) and tiny s (where e could underflow) count as risky."""
    a_hi, a_lo = _split(a)
    b_hi, b_lo = _split_scalar(b)
    e = ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
    return ~(np.abs(t + e) < half_ulp * (1.0 - 2.0**-50)) | (half_ulp < _TINY_HALF_ULP)


def _split_scalar(b: float) -> tuple[float, float]:
    """_split of one float, with the same double operations."""
    scaled = b * _SPLIT
    high = scaled - (scaled - b)
    return high, b - high


@functools.cache
def _fused() -> bool:
    """Whether TA-Lib's EMA rounds (x - prev) * k + prev once (its FMA clone) or twice; decided on a probe series."""
    x = np.array([1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6, 2.7, 2.8,
                  2.9, 3.0, 3.1, 3.2, 3.3, 3.4, 3.5, 3.6, 3.7, 3.8, 3.9, 4.0, 4.1]) ** 3.3
    high, low = x * 1.01, x * 0.987
    tr = _true_range(high[1:], low[1:], x[:-1])
    atr = np.array([tr[:ATR_PERIOD].sum() / ATR_PERIOD])  # any value; only its fused and unfused paths matter
    c1 = float(ATR_PERIOD - 1) / float(ATR_PERIOD)
    c2 = 1.0 - c1
    fused = unfused = atr
    for value in tr[ATR_PERIOD:]:
        fused = _fma(fused, c1, np.array([value * c2]))
        unfused = unfused * c1 + value * c2
    talib_atr = talib.ATR(high, low, x, timeperiod=ATR_PERIOD)[-1]
    return bool(fused[0] == talib_atr and unfused[0] != talib_atr) or bool(fused[0] == talib_atr == unfused[0])


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
    prev[...] = _mul_add(tmp, k, prev)


def _wilder(x: np.ndarray, period: int, length: int) -> np.ndarray:
    """TA_ATR's averaging: mean of bars 1..period, then (prev * (period-1) + x) / period, which TA-Lib's
    fast-math build evaluates as prev * c1 + x * c2 with c1 = (period-1)/period and c2 = 1 - c1."""
    prev = _running_sum(x, 1, period + 1, x.shape[1]) / float(period)
    c1 = float(period - 1) / float(period)
    c2 = 1.0 - c1
    for j in range(period + 1, length):
        prev = _mul_add(prev, c1, x[j] * c2, near_c=False)
    return prev


def _rsi(out: np.ndarray, bars: _Bars, win: _Windows) -> None:
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


def _directional(out: np.ndarray, bars: _Bars, win: _Windows) -> None:
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


def _atr(out: np.ndarray, bars: _Bars, win: _Windows, close_last: np.ndarray) -> None:
    atr = _wilder(win.rows(bars.true_range), ATR_PERIOD, win.length)
    out[:, COLUMN["atr"]] = atr
    with np.errstate(divide="ignore", invalid="ignore"):
        out[:, COLUMN["atr_pct"]] = np.where(close_last > 0, atr / close_last * 100.0, np.nan)


def _bollinger(out: np.ndarray, bars: _Bars, win: _Windows, close_last: np.ndarray) -> None:
    """TA_BBANDS per window: the installed build re-centres its running sums of x and x*x (shifted sums with a
    cancellation guard that restarts them); only the compiled loops replicate that (kernels.bollinger_windows),
    so here each window calls TA-Lib."""
    starts = win.starts
    bands = np.empty((3, win.n))
    for i, start in enumerate(starts.tolist()):
        upper, middle, lower = _BBANDS(bars.close[start:start + win.length], timeperiod=BB_PERIOD,
                                       nbdevup=BB_STDDEV, nbdevdn=BB_STDDEV, matype=0)
        bands[0, i], bands[1, i], bands[2, i] = upper[-1], middle[-1], lower[-1]
    _put_bollinger(out, bands[0], bands[1], bands[2], close_last)


def _put_bollinger(out: np.ndarray, upper: np.ndarray, middle: np.ndarray, lower: np.ndarray,
                   close: np.ndarray) -> None:
    finite = np.isfinite(upper) & np.isfinite(middle) & np.isfinite(lower)
    span = upper - lower
    with np.errstate(divide="ignore", invalid="ignore"):
        pct_b = np.where(span > 0, (close - lower) / span, 0.5)
        width = np.where(middle != 0, span / middle * 100.0, np.nan)
    for name, values in (("bb_upper", upper), ("bb_middle", middle), ("bb_lower", lower), ("bb_pct_b", pct_b),
                         ("bb_width", width)):
        out[:, COLUMN[name]] = np.where(finite, values, np.nan)


def _stochastic(out: np.ndarray, bars: _Bars, win: _Windows) -> None:
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


def _obv(out: np.ndarray, bars: _Bars, win: _Windows) -> None:
    step = win.rows(bars.signed_volume)
    obv = win.rows(bars.volume)[0].copy()
    for j in range(1, win.length):
        obv += step[j]
    out[:, COLUMN["obv"]] = obv


def _fill(out: np.ndarray, bars: _Bars, win: _Windows) -> None:
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
        _bollinger(out, bars, win, close_last)
    if length > 1:
        _obv(out, bars, win)


def batch_latest_indicators(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray,
    ends: np.ndarray, length: int, chunk: int = DEFAULT_CHUNK, compiled: bool = True,
) -> np.ndarray:
    """Row i = latest_indicators over the window series[ends[i] - length + 1 : ends[i] + 1], as a float64 row over
    INDICATOR_NAMES with NaN where latest_indicators leaves the key out. `ends` ascending, each >= length - 1.

    `compiled` (default) uses the numba loops of app.indicators.kernels when numba is installed; otherwise, or
    with compiled=False, the numpy replay below computes `chunk` windows per vector step. Both give the same bits."""
    ends = np.asarray(ends, dtype=np.int64)
    out = np.full((len(ends), len(INDICATOR_NAMES)), np.nan)
    if len(ends) == 0:
        return out
    if length < 1 or ends[0] < length - 1 or ends[-1] >= len(close) or np.any(np.diff(ends) < 0):
        raise ValueError("windows must lie inside the series, with ascending ends")
    lo, hi = int(ends[0]) - length + 1, int(ends[-1]) + 1
    arrays = (np.ascontiguousarray(a[lo:hi], dtype=np.float64) for a in (open_, high, low, close, volume))
    bars = _Bars(*arrays)
    local = ends - lo
    kernels = compiled_kernels() if compiled else None
    if kernels is not None:
        _fill_compiled(kernels, out, bars, local, length)
    else:
        for begin in range(0, len(ends), chunk):
            _fill(out[begin:begin + chunk], bars, _Windows(local[begin:begin + chunk], length))
    _drop_non_finite(out)
    return out


@functools.cache
def warm_up() -> None:
    """Load (or compile) the compiled loops now, once per process (a backtest before its first cycle, and a process
    about to fork workers: once for all of them; later calls return at once).
    The garbage collector waits meanwhile: loading builds numba's typing tables (tens of thousands of objects, no
    garbage), and a full collection would walk every object the process holds (a backtest's candles: two took
    0.25 s of a one-symbol-year run)."""
    with _collector_paused():
        bars = np.linspace(100.0, 110.0, 64)
        batch_latest_indicators(bars, bars + 1.0, bars - 1.0, bars, np.ones(64), np.array([62, 63]), 40)
        kernels = compiled_kernels()
        if kernels is not None:
            flags = bars > 105.0
            kernels.sr_zone_windows(bars + 1.0, bars - 1.0, flags, ~flags, np.array([0, 1]), 40, 5, 0.005)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@functools.cache
def compiled_kernels() -> ModuleType | None:
    """The compiled loops (app.indicators.kernels), or None where numba cannot be imported: then the numpy replay."""
    try:
        from app.indicators import kernels
    except (ImportError, RuntimeError) as e:  # RuntimeError: numba found no writable place for its cache
        logging.getLogger(__name__).warning("compiled indicator loops unavailable (%s); using the numpy replay", e)
        return None
    return kernels


def _fill_compiled(kernels: ModuleType, out: np.ndarray, bars: _Bars, ends: np.ndarray, length: int) -> None:
    kernels.fill_windows(out, ends - length + 1, length, _fused(), bars.open, bars.close, bars.volume,
                         bars.true_range, bars.plus_dm, bars.minus_dm, bars.gain, bars.loss, bars.signed_volume,
                         bars.fast_k)
    if length >= BB_PERIOD:
        if np.isfinite(bars.close).all():  # TA-Lib's wrapper skips leading NaN: windows with NaN go to TA-Lib
            bands = np.empty((3, len(ends)))
            kernels.bollinger_windows(bands, bars.close, ends - length + 1, length, BB_PERIOD, BB_STDDEV)
            _put_bollinger(out, bands[0], bands[1], bands[2], bars.close[ends])
        else:
            _bollinger(out, bars, _Windows(ends, length), bars.close[ends])


def _drop_non_finite(out: np.ndarray) -> None:
    out[~np.isfinite(out)] = np.nan


def row_to_dict(row: np.ndarray) -> dict[str, float]:
    """The latest_indicators dict of one result row (whose non-finite values are all NaN): the other values, in
    INDICATOR_NAMES order."""
    return {name: value for name, value in zip(INDICATOR_NAMES, row.tolist(), strict=True) if value == value}
