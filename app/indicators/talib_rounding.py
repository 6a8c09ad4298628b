"""a * b + c as the installed TA-Lib rounds it: whether its build fuses, and an exact numpy emulation if so."""

from __future__ import annotations

import functools

import numpy as np
import talib

from app.indicators.batch_bars import true_range
from app.indicators.technical import ATR_PERIOD

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


def mul_add(a: np.ndarray, b: float, c: np.ndarray, near_c: bool = True) -> np.ndarray:
    """a * b + c as the installed TA-Lib build rounds it: fused on CPUs where it picked its FMA code. `near_c`:
    a * b is mostly far below c (EMA steps), so a cheap bound clears nearly every lane; otherwise (ATR's
    prev * c1 + x * c2, where the bound clears almost none) the product error is computed exactly."""
    return _fused_mul_add(a, b, c, near_c) if talib_fuses() else a * b + c


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
def talib_fuses() -> bool:
    """Whether TA-Lib's EMA rounds (x - prev) * k + prev once (its FMA clone) or twice; decided on a probe series."""
    x = np.array([1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6, 2.7, 2.8,
                  2.9, 3.0, 3.1, 3.2, 3.3, 3.4, 3.5, 3.6, 3.7, 3.8, 3.9, 4.0, 4.1]) ** 3.3
    high, low = x * 1.01, x * 0.987
    tr = true_range(high[1:], low[1:], x[:-1])
    atr = np.array([tr[:ATR_PERIOD].sum() / ATR_PERIOD])  # any value; only its fused and unfused paths matter
    c1 = float(ATR_PERIOD - 1) / float(ATR_PERIOD)
    c2 = 1.0 - c1
    fused = unfused = atr
    for value in tr[ATR_PERIOD:]:
        fused = _fma(fused, c1, np.array([value * c2]))
        unfused = unfused * c1 + value * c2
    talib_atr = talib.ATR(high, low, x, timeperiod=ATR_PERIOD)[-1]
    return bool(fused[0] == talib_atr and unfused[0] != talib_atr) or bool(fused[0] == talib_atr == unfused[0])
