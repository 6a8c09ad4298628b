"""The candle store: "which candles had closed at time t", fast and exactly, as lazy windows of loaded series."""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, overload

import numpy as np

from app.domain.clock import ms_from_utc, utc_from_ms
from app.domain.errors import DataError
from app.domain.values import Candle, Timeframe
from app.marketdata.candle_files import discover_files, load_symbol
from app.marketdata.series import CandleArrays, CandleSeries

# Series that processes forked from this one hold too (CandleStore.share_with_forks), by id: identical in a fork
_SHARED: dict[int, CandleSeries] = {}


@dataclass(frozen=True, slots=True)
class Gap:
    """Missing candles: every open time from `first_missing_ms` to `last_missing_ms` (inclusive) is absent."""

    first_missing_ms: int
    last_missing_ms: int
    missing: int


class CandleWindow(Sequence[Candle]):
    """Consecutive closed candles of one series, built into exact Decimal candles only when read.

    A cycle reads a 556-candle window but touches only its last few candles (the feature builder reads the
    float columns), so building every Candle up front was most of a cycle's cost.
    """

    __slots__ = ("_series", "_start", "_stop")

    def __init__(self, series: CandleSeries, start: int, stop: int) -> None:
        self._series, self._start, self._stop = series, start, stop

    def __len__(self) -> int:
        return self._stop - self._start

    def float_arrays(self) -> CandleArrays:
        """The window as float columns (views, no copy); each value is exactly float() of the candle's Decimal,
        so indicator maths on them equals maths on arrays converted from the candles, as the live path does."""
        return self._series.arrays.slice(self._start, self._stop)

    def source(self) -> tuple[CandleArrays, int, int]:
        """The whole series' float columns and this window's [start, stop) in them (for computing many
        windows of one series at once)."""
        return self._series.arrays, self._start, self._stop

    def last_close(self) -> Decimal:
        """The last candle's close, without building it (the price a cycle trades at)."""
        if self._stop <= self._start:
            raise IndexError("an empty candle window has no close")
        return self._series.close(self._stop - 1)

    def tail(self, count: int) -> CandleWindow:
        """The last `count` candles, still unbuilt."""
        return CandleWindow(self._series, max(self._start, self._stop - max(0, count)), self._stop)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickles as a reference when its series is shared with forked processes (CandleStore.share_with_forks),
        else as the tuple of its candles: a window must not drag its whole series to another process."""
        if _SHARED.get(id(self._series)) is self._series:
            return _shared_window, (id(self._series), self._start, self._stop)
        return tuple, (tuple(self),)

    def key(self) -> tuple[int, int, int]:
        """Length and first and last open times, as `market_features.window_key` gives them, without candles."""
        if self._stop <= self._start:
            return (0, 0, 0)
        times = self._series.arrays.open_time_ms
        return (self._stop - self._start, times.item(self._start), times.item(self._stop - 1))

    @overload
    def __getitem__(self, index: int) -> Candle: ...

    @overload
    def __getitem__(self, index: slice) -> list[Candle]: ...

    def __getitem__(self, index: int | slice) -> Candle | list[Candle]:
        if isinstance(index, slice):
            return [self._series.candle(self._start + i) for i in range(*index.indices(len(self)))]
        position = index + len(self) if index < 0 else index
        if not 0 <= position < len(self):
            raise IndexError("candle window index out of range")
        return self._series.candle(self._start + position)

    def __iter__(self) -> Iterator[Candle]:
        return (self._series.candle(i) for i in range(self._start, self._stop))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]


def _shared_window(series_id: int, start: int, stop: int) -> CandleWindow:
    series = _SHARED.get(series_id)
    if series is None:
        raise pickle.UnpicklingError("a candle window refers to a series this process does not share")
    return CandleWindow(series, start, stop)


_TIMEFRAMES: dict[str, Timeframe] = {tf.value: tf for tf in Timeframe}


def as_timeframe(value: str) -> Timeframe:
    """Timeframe(value) without the enum call's cost on the per-cycle path (same ValueError for unknown ones)."""
    found = _TIMEFRAMES.get(value)
    return found if found is not None else Timeframe(value)


class CandleStore:
    """Closed candles per symbol and timeframe (the `CandleSource` port), loaded once and shared read-only."""

    def __init__(self, series: dict[tuple[str, Timeframe], CandleSeries], directory: Path | None = None) -> None:
        self._series = series
        self.directory = directory  # where the candles were read from (their exchange_info.json is there too)
        self._symbols = sorted({symbol for symbol, _ in series})
        self._symbol_set = frozenset(self._symbols)
        # (symbol, timeframe) -> (series, candle duration in ms): the per-cycle lookups in one dict read
        self._steps = {key: (found, key[1].ms) for key, found in series.items()}

    @classmethod
    def load(
        cls,
        directory: Path,
        symbols: Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> CandleStore:
        """Read `binance_<SYMBOL>_<TF>.csv[.gz]`; 15m/1h are resampled from 5m when their file is absent.

        `start`/`end` keep candles whose open time is in [start, end).
        """
        files = discover_files(Path(directory), symbols)
        series: dict[tuple[str, Timeframe], CandleSeries] = {}
        for symbol in sorted({symbol for symbol, _ in files}):
            series.update(load_symbol(symbol, files))
        if start is None and end is None:
            return cls(series, Path(directory))
        return cls({key: _cut(s, start, end).compact() for key, s in series.items()}, Path(directory))

    def between(self, start: datetime | None, end: datetime | None) -> CandleStore:
        """The candles whose open time is in [start, end) (views: nothing is parsed again)."""
        return CandleStore({key: _cut(s, start, end) for key, s in self._series.items()}, self.directory)

    def symbols(self) -> Sequence[str]:
        return list(self._symbols)

    @contextmanager
    def share_with_forks(self) -> Iterator[None]:
        """While open, a window of these candles pickles as a reference that a process forked meanwhile (holding
        the same series) and this one resolve, instead of as its candles."""
        shared = {id(series): series for series in self._series.values()}
        _SHARED.update(shared)
        try:
            yield
        finally:
            for key in shared:
                _SHARED.pop(key, None)

    def has_symbol(self, symbol: str) -> bool:
        return symbol in self._symbol_set

    def timeframes(self, symbol: str) -> list[Timeframe]:
        return [tf for tf in Timeframe if (symbol, tf) in self._series]

    def closed_candles(self, symbol: str, timeframe: Timeframe, until: datetime, limit: int) -> list[Candle]:
        """The last `limit` candles that closed at or before `until` (open time + duration <= until), oldest first."""
        series, start, stop = self._closed(symbol, timeframe, until, limit)
        return [series.candle(i) for i in range(start, stop)]

    def closed_window(self, symbol: str, timeframe: Timeframe, until: datetime, limit: int) -> CandleWindow:
        """The same candles as `closed_candles`, as a lazy sequence."""
        return CandleWindow(*self._closed(symbol, timeframe, until, limit))

    def closed_arrays(self, symbol: str, timeframe: Timeframe, until: datetime, limit: int) -> CandleArrays:
        """Float views of the same candles `closed_candles` returns (no copy)."""
        series, start, stop = self._closed(symbol, timeframe, until, limit)
        return series.arrays.slice(start, stop)

    def price_at(self, symbol: str, when: datetime) -> Decimal:
        """Close of the last 5m candle closed at `when`: the simulated last traded price."""
        series, start, stop = self._closed(symbol, Timeframe.M5, when, 1)
        if stop <= start:
            raise DataError(f"no closed 5m candle for {symbol} at {when.isoformat()}")
        return series.close(start)  # without building the candle

    def candles_between(self, symbol: str, timeframe: Timeframe, start_ms: int, end_ms: int) -> list[Candle]:
        """Candles whose open time is in [start_ms, end_ms), oldest first."""
        series = self._get(symbol, timeframe)
        start, stop = self._between_range(series, start_ms, end_ms)
        return [series.candle(i) for i in range(start, stop)]

    def arrays_between(self, symbol: str, timeframe: Timeframe, start_ms: int, end_ms: int) -> CandleArrays:
        arrays, first, stop = self.rows_between(symbol, timeframe, start_ms, end_ms)
        return arrays.slice(first, stop)

    def rows_between(self, symbol: str, timeframe: Timeframe, start_ms: int, end_ms: int) -> tuple[
            CandleArrays, int, int]:
        """The series' columns and the rows [first, stop) whose open time is in [start_ms, end_ms)."""
        series = self._get(symbol, timeframe)
        return (series.arrays, *self._between_range(series, start_ms, end_ms))

    def span(self, symbol: str, timeframe: Timeframe = Timeframe.M5) -> tuple[datetime, datetime]:
        """Open time of the first candle and close time of the last one."""
        times = self._get(symbol, timeframe).arrays.open_time_ms
        if len(times) == 0:
            raise DataError(f"no {timeframe} candles for {symbol}")
        return utc_from_ms(int(times[0])), utc_from_ms(int(times[-1]) + timeframe.ms)

    def gaps(self, symbol: str, timeframe: Timeframe) -> list[Gap]:
        times = self._get(symbol, timeframe).arrays.open_time_ms
        steps = np.diff(times)
        return [
            Gap(int(times[i]) + timeframe.ms, int(times[i + 1]) - timeframe.ms, int(steps[i]) // timeframe.ms - 1)
            for i in np.flatnonzero(steps > timeframe.ms)
        ]

    def _get(self, symbol: str, timeframe: Timeframe) -> CandleSeries:
        found = self._series.get((symbol, as_timeframe(timeframe)))
        if found is None:
            raise DataError(f"no {timeframe} candles loaded for {symbol}")
        return found

    def _closed(self, symbol: str, timeframe: Timeframe, until: datetime, limit: int) -> tuple[CandleSeries, int, int]:
        """The series and the rows [start, stop) of its last `limit` candles closed by `until` (every cycle asks
        three times: one dict read finds the series and its candle duration)."""
        found = self._steps.get((symbol, timeframe))
        series, step_ms = found if found is not None else (self._get(symbol, timeframe), as_timeframe(timeframe).ms)
        stop = series.rows_through(ms_from_utc(until) - step_ms)
        start = stop - limit if limit > 0 else stop
        return series, start if start > 0 else 0, stop

    @staticmethod
    def _between_range(series: CandleSeries, start_ms: int, end_ms: int) -> tuple[int, int]:
        times = series.arrays.open_time_ms
        start = int(times.searchsorted(start_ms, side="left"))
        return start, max(start, int(times.searchsorted(end_ms, side="left")))


def _cut(series: CandleSeries, start: datetime | None, end: datetime | None) -> CandleSeries:
    times = series.arrays.open_time_ms
    first = 0 if start is None else int(np.searchsorted(times, ms_from_utc(start), side="left"))
    stop = len(times) if end is None else int(np.searchsorted(times, ms_from_utc(end), side="left"))
    return series.sliced(first, max(first, stop))
