"""`latest_indicators` for many equal-length windows at once, bit-identical to TA-Lib; loads the compiled loops."""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
from collections.abc import Iterator
from types import ModuleType

import numpy as np

from app.indicators import talib_rounding
from app.indicators.batch_bars import Bars, Windows
from app.indicators.batch_replay import bollinger, fill, put_bollinger
from app.indicators.indicator_row import INDICATOR_NAMES
from app.indicators.technical import BB_PERIOD, BB_STDDEV

DEFAULT_CHUNK = 16384  # measured: 1024 61 us, 4096 28 us, 8192 26 us, 16384 22 us per 288-bar window


def batch_latest_indicators(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray,
    ends: np.ndarray, length: int, chunk: int = DEFAULT_CHUNK, compiled: bool = True,
) -> np.ndarray:
    """Row i = latest_indicators over the window series[ends[i] - length + 1 : ends[i] + 1], as a float64 row over
    INDICATOR_NAMES with NaN where latest_indicators leaves the key out. `ends` ascending, each >= length - 1.

    `compiled` (default) uses the numba loops of app.indicators.kernels when numba is installed; otherwise, or
    with compiled=False, the numpy replay (app.indicators.batch_replay) computes `chunk` windows per vector step.
    Both give the same bits."""
    ends = np.asarray(ends, dtype=np.int64)
    out = np.full((len(ends), len(INDICATOR_NAMES)), np.nan)
    if len(ends) == 0:
        return out
    if length < 1 or ends[0] < length - 1 or ends[-1] >= len(close) or np.any(np.diff(ends) < 0):
        raise ValueError("windows must lie inside the series, with ascending ends")
    lo, hi = int(ends[0]) - length + 1, int(ends[-1]) + 1
    arrays = (np.ascontiguousarray(a[lo:hi], dtype=np.float64) for a in (open_, high, low, close, volume))
    bars = Bars(*arrays)
    local = ends - lo
    kernels = compiled_kernels() if compiled else None
    if kernels is not None:
        _fill_compiled(kernels, out, bars, local, length)
    else:
        for begin in range(0, len(ends), chunk):
            fill(out[begin:begin + chunk], bars, Windows(local[begin:begin + chunk], length))
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


def _fill_compiled(kernels: ModuleType, out: np.ndarray, bars: Bars, ends: np.ndarray, length: int) -> None:
    kernels.fill_windows(out, ends - length + 1, length, talib_rounding.talib_fuses(), bars.open, bars.close,
                         bars.volume, bars.true_range, bars.plus_dm, bars.minus_dm, bars.gain, bars.loss,
                         bars.signed_volume, bars.fast_k)
    if length >= BB_PERIOD:
        if np.isfinite(bars.close).all():  # TA-Lib's wrapper skips leading NaN: windows with NaN go to TA-Lib
            bands = np.empty((3, len(ends)))
            kernels.bollinger_windows(bands, bars.close, ends - length + 1, length, BB_PERIOD, BB_STDDEV)
            put_bollinger(out, bands[0], bands[1], bands[2], bars.close[ends])
        else:
            bollinger(out, bars, Windows(ends, length), bars.close[ends])


def _drop_non_finite(out: np.ndarray) -> None:
    out[~np.isfinite(out)] = np.nan

