"""The batch replay's inputs: per-bar terms TA-Lib derives from two bars, and views of every window's bars."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from app.indicators.technical import STOCH_K


class Bars:
    """Per-bar inputs of the whole call, including the window-independent terms TA-Lib derives from two bars."""

    def __init__(self, open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
                 volume: np.ndarray) -> None:
        self.open, self.high, self.low, self.close, self.volume = open_, high, low, close, volume
        prev_close = np.concatenate(([close[0]], close[:-1]))
        prev_high = np.concatenate(([high[0]], high[:-1]))
        prev_low = np.concatenate(([low[0]], low[:-1]))
        self.true_range = true_range(high, low, prev_close)
        self.plus_dm, self.minus_dm = _directional_moves(high, low, prev_high, prev_low)
        change = close - prev_close
        falling = change < 0.0
        self.gain = np.where(falling, 0.0, change)
        self.loss = np.where(falling, -change, 0.0)  # prevLoss -= change is prevLoss + (-change), exactly
        self.signed_volume = np.where(close > prev_close, volume, np.where(close < prev_close, -volume, 0.0))
        self.fast_k = _fast_k(high, low, close)


def true_range(high: np.ndarray, low: np.ndarray, prev_close: np.ndarray) -> np.ndarray:
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


class Windows:
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
