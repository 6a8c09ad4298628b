"""Candle files loaded into numpy arrays, answering "which candles had closed at time t" fast and exactly."""

from __future__ import annotations

import gzip
import io
import math
import pickle
import re
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, overload

import numpy as np
import pandas as pd

from app.domain.clock import ms_from_utc, utc_from_ms
from app.domain.errors import DataError
from app.domain.values import Candle, Timeframe

HEADER = "open_time_ms,open,high,low,close,volume"
COLUMNS = tuple(HEADER.split(","))
FILE_PATTERN = re.compile(r"^binance_(?P<symbol>[A-Z0-9]+)_(?P<tf>5m|15m|1h)\.csv(?P<gz>\.gz)?$")
_CANDLE_CACHE_SIZE = 1024  # per series: a few windows of recent candles (each one ~350 bytes as Decimals)
# Series that processes forked from this one hold too (CandleStore.share_with_forks), by id: identical in a fork
_SHARED: dict[int, _Series] = {}


@dataclass(frozen=True, slots=True)
class CandleArrays:
    """Column views of consecutive candles: int64 open times, float64 prices and volumes (for indicator math)."""

    open_time_ms: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.open_time_ms)

    def slice(self, start: int, stop: int) -> CandleArrays:
        return CandleArrays(*(column[start:stop] for column in self.columns()))

    def columns(self) -> tuple[np.ndarray, ...]:
        return (self.open_time_ms, self.open, self.high, self.low, self.close, self.volume)


@dataclass(frozen=True, slots=True)
class Gap:
    """Missing candles: every open time from `first_missing_ms` to `last_missing_ms` (inclusive) is absent."""

    first_missing_ms: int
    last_missing_ms: int
    missing: int


class _Series:
    """One symbol and timeframe: float arrays for speed, exact Decimal candles built on demand."""

    def __init__(self, arrays: CandleArrays) -> None:
        self.arrays = arrays
        self._cache: dict[int, Candle] = {}
        # the last rows_through answer and the open times around it: [low, high) gives the same answer again
        self._through: tuple[int, float, float] = (0, -math.inf, -math.inf)

    def rows_through(self, open_ms: int) -> int:
        """How many candles open at or before `open_ms` (searchsorted right). Cycles ask in time order, so the
        answer is mostly the last one or the next row: checked first, with plain ints."""
        stop, low, high = self._through
        if low <= open_ms < high:
            return stop
        times = self.arrays.open_time_ms
        count = len(times)
        stop += 1
        if not (0 < stop <= count and times.item(stop - 1) <= open_ms
                and (stop == count or open_ms < times.item(stop))):
            stop = int(times.searchsorted(open_ms, "right"))
        self._through = (stop, times.item(stop - 1) if stop else -math.inf,
                         times.item(stop) if stop < count else math.inf)
        return stop

    def candle(self, index: int) -> Candle:
        found = self._cache.get(index)
        if found is None:
            if len(self._cache) >= _CANDLE_CACHE_SIZE:
                self._cache.clear()  # consecutive cycles ask for nearly the same window, so a reset is cheap
            found = self._cache[index] = self._build_candle(index)
        return found

    def _build_candle(self, index: int) -> Candle:
        raise NotImplementedError

    def close(self, index: int) -> Decimal:
        """The candle's exact close (without building the candle where the series can)."""
        return self.candle(index).close

    def sliced(self, start: int, stop: int) -> _Series:
        raise NotImplementedError

    def compact(self) -> _Series:
        """A copy holding only its own rows: a slice keeps the whole file's text and columns alive."""
        raise NotImplementedError

    def _copied_arrays(self) -> CandleArrays:
        return CandleArrays(*(column.copy() for column in self.arrays.columns()))

    def decimal_volumes(self) -> list[Decimal]:
        return [self.candle(i).volume for i in range(len(self.arrays))]


class _TextSeries(_Series):
    """Candles read from a file; each row's text is kept so prices parse into Decimal exactly as written."""

    def __init__(self, arrays: CandleArrays, text: bytes, line_starts: np.ndarray, line_ends: np.ndarray) -> None:
        super().__init__(arrays)
        self._text = text
        self._starts = line_starts
        self._ends = line_ends

    def _line(self, index: int) -> bytes:
        return self._text[self._starts.item(index):self._ends.item(index)]

    def _fields(self, index: int) -> list[str]:
        """The row's six fields as written: open time, open, high, low, close, volume."""
        return self._line(index).decode("ascii").strip().split(",")

    def _build_candle(self, index: int) -> Candle:
        time_text, *values = self._fields(index)
        return Candle(int(time_text), *(Decimal(value) for value in values))

    def close(self, index: int) -> Decimal:
        found = self._cache.get(index)
        if found is not None:
            return found.close
        # the close is the fifth field: only it is decoded (a line's end may carry spaces or a CR, never before it)
        return Decimal(self._line(index).split(b",", 5)[4].decode("ascii"))

    def sliced(self, start: int, stop: int) -> _TextSeries:
        return _TextSeries(self.arrays.slice(start, stop), self._text, self._starts[start:stop], self._ends[start:stop])

    def compact(self) -> _TextSeries:
        if len(self.arrays) == 0:
            return _TextSeries(self._copied_arrays(), b"", self._starts.copy(), self._ends.copy())
        begin, finish = int(self._starts[0]), int(self._ends[-1])
        return _TextSeries(self._copied_arrays(), self._text[begin:finish], self._starts - begin, self._ends - begin)

    def decimal_volumes(self) -> list[Decimal]:
        """Every row's volume exactly as `_build_candle` reads it, without building whole candles."""
        text = self._text
        return [
            Decimal(text[a:b].decode("ascii").strip().rsplit(",", 1)[1])
            for a, b in zip(self._starts.tolist(), self._ends.tolist(), strict=True)
        ]


class _ResampledSeries(_Series):
    """Coarser candles built from 5m rows `first[i]..last[i]` of a source series."""

    def __init__(self, arrays: CandleArrays, source: _Series, first: np.ndarray, last: np.ndarray) -> None:
        super().__init__(arrays)
        self._source = source
        self._first = first
        self._last = last

    def _build_candle(self, index: int) -> Candle:
        rows = [self._source.candle(i) for i in range(int(self._first[index]), int(self._last[index]) + 1)]
        return Candle(
            int(self.arrays.open_time_ms[index]),
            rows[0].open,
            max(row.high for row in rows),
            min(row.low for row in rows),
            rows[-1].close,
            sum((row.volume for row in rows), Decimal(0)),
        )

    def close(self, index: int) -> Decimal:
        return self._source.close(int(self._last[index]))

    def sliced(self, start: int, stop: int) -> _ResampledSeries:
        return _ResampledSeries(
            self.arrays.slice(start, stop), self._source, self._first[start:stop], self._last[start:stop]
        )

    def compact(self) -> _ResampledSeries:
        low = int(self._first[0]) if len(self._first) else 0
        high = int(self._last[-1]) + 1 if len(self._last) else 0
        source = self._source.sliced(low, high).compact()
        return _ResampledSeries(self._copied_arrays(), source, self._first - low, self._last - low)


class CandleWindow(Sequence[Candle]):
    """Consecutive closed candles of one series, built into exact Decimal candles only when read.

    A cycle reads a 556-candle window but touches only its last few candles (the feature builder reads the
    float columns), so building every Candle up front was most of a cycle's cost.
    """

    __slots__ = ("_series", "_start", "_stop")

    def __init__(self, series: _Series, start: int, stop: int) -> None:
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


def resample(source: _Series, timeframe: Timeframe) -> _ResampledSeries:
    """Binance-style aggregation: a bucket is emitted for whatever 5m candles exist in it (partial at gaps)."""
    a = source.arrays
    buckets = a.open_time_ms // timeframe.ms * timeframe.ms
    if len(buckets) == 0:
        return _ResampledSeries(a, source, np.zeros(0, np.int64), np.zeros(0, np.int64))
    first = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
    last = np.r_[first[1:] - 1, len(buckets) - 1]
    arrays = CandleArrays(
        buckets[first],
        a.open[first],  # float() is monotonic, so max/min of the floats is float() of the Decimal max/min
        np.maximum.reduceat(a.high, first),
        np.minimum.reduceat(a.low, first),
        a.close[last],
        _bucket_volumes(source, first, last),
    )
    return _ResampledSeries(arrays, source, first, last)


def _bucket_volumes(source: _Series, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """float() of each bucket's exact Decimal volume sum, as the resampled Candle holds it (a float sum can differ
    in the last bit, and the feature builder reads these columns instead of converting candles)."""
    volumes = source.decimal_volumes()
    sums = (sum(volumes[int(a) : int(b) + 1], Decimal(0)) for a, b in zip(first, last, strict=True))
    return np.fromiter((float(total) for total in sums), dtype=np.float64, count=len(first))


_TIMEFRAMES: dict[str, Timeframe] = {tf.value: tf for tf in Timeframe}


def as_timeframe(value: str) -> Timeframe:
    """Timeframe(value) without the enum call's cost on the per-cycle path (same ValueError for unknown ones)."""
    found = _TIMEFRAMES.get(value)
    return found if found is not None else Timeframe(value)


class CandleStore:
    """Closed candles per symbol and timeframe (the `CandleSource` port), loaded once and shared read-only."""

    def __init__(self, series: dict[tuple[str, Timeframe], _Series]) -> None:
        self._series = series
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
        files = _discover(Path(directory), symbols)
        series: dict[tuple[str, Timeframe], _Series] = {}
        for symbol in sorted({symbol for symbol, _ in files}):
            series.update(_load_symbol(symbol, files))
        if start is None and end is None:
            return cls(series)
        return cls({key: _cut(s, start, end).compact() for key, s in series.items()})

    def between(self, start: datetime | None, end: datetime | None) -> CandleStore:
        """The candles whose open time is in [start, end) (views: nothing is parsed again)."""
        return CandleStore({key: _cut(s, start, end) for key, s in self._series.items()})

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

    def _get(self, symbol: str, timeframe: Timeframe) -> _Series:
        found = self._series.get((symbol, as_timeframe(timeframe)))
        if found is None:
            raise DataError(f"no {timeframe} candles loaded for {symbol}")
        return found

    def _closed(self, symbol: str, timeframe: Timeframe, until: datetime, limit: int) -> tuple[_Series, int, int]:
        """The series and the rows [start, stop) of its last `limit` candles closed by `until` (every cycle asks
        three times: one dict read finds the series and its candle duration)."""
        found = self._steps.get((symbol, timeframe))
        series, step_ms = found if found is not None else (self._get(symbol, timeframe), as_timeframe(timeframe).ms)
        stop = series.rows_through(ms_from_utc(until) - step_ms)
        start = stop - limit if limit > 0 else stop
        return series, start if start > 0 else 0, stop

    @staticmethod
    def _between_range(series: _Series, start_ms: int, end_ms: int) -> tuple[int, int]:
        times = series.arrays.open_time_ms
        start = int(times.searchsorted(start_ms, side="left"))
        return start, max(start, int(times.searchsorted(end_ms, side="left")))


def _discover(directory: Path, symbols: Sequence[str] | None) -> dict[tuple[str, Timeframe], Path]:
    if not directory.is_dir():
        raise DataError(f"candle directory {directory} does not exist")
    wanted = {s.upper() for s in symbols} if symbols is not None else None
    files: dict[tuple[str, Timeframe], Path] = {}
    for path in sorted(directory.iterdir()):
        match = FILE_PATTERN.match(path.name)
        if match is None or (wanted is not None and match["symbol"] not in wanted):
            continue
        key = (match["symbol"], Timeframe(match["tf"]))
        if key not in files or match["gz"]:  # the .csv.gz wins over a same-named plain .csv
            files[key] = path
    missing = sorted((wanted or set()) - {symbol for symbol, _ in files})
    if missing:
        raise DataError(f"no candle files for {', '.join(missing)} in {directory}")
    return files


def _load_symbol(symbol: str, files: dict[tuple[str, Timeframe], Path]) -> dict[tuple[str, Timeframe], _Series]:
    loaded: dict[tuple[str, Timeframe], _Series] = {}
    for timeframe in Timeframe:
        path = files.get((symbol, timeframe))
        if path is not None:
            loaded[(symbol, timeframe)] = read_candle_file(path, timeframe)
    five = loaded.get((symbol, Timeframe.M5))
    if five is not None:
        for timeframe in (Timeframe.M15, Timeframe.H1):
            if (symbol, timeframe) not in loaded:
                loaded[(symbol, timeframe)] = resample(five, timeframe)
    return loaded


def _cut(series: _Series, start: datetime | None, end: datetime | None) -> _Series:
    times = series.arrays.open_time_ms
    first = 0 if start is None else int(np.searchsorted(times, ms_from_utc(start), side="left"))
    stop = len(times) if end is None else int(np.searchsorted(times, ms_from_utc(end), side="left"))
    return series.sliced(first, max(first, stop))


def read_candle_file(path: Path, timeframe: Timeframe) -> _TextSeries:
    """Parse and validate one file; any problem raises DataError naming the file and the line."""
    text = _read_bytes(path)
    header_end = text.find(b"\n")
    header = text[: header_end if header_end >= 0 else len(text)].decode("ascii", "replace").strip()
    if header != HEADER:
        raise DataError(f"{path}: line 1: bad header {header!r}, expected {HEADER!r}")
    starts, ends = _line_bounds(text, header_end)
    arrays = _parse_columns(path, text, header_end)
    if len(arrays) != len(starts):
        raise DataError(f"{path}: {_diagnose_rows(text)}")
    problem = _first_problem(arrays, timeframe)
    if problem is not None:
        raise DataError(f"{path}: {problem}")
    if not _parsed_exactly(text, header_end):
        arrays = _decimal_columns(text, starts, ends)
    return _TextSeries(arrays, text, starts, ends)


def _parsed_exactly(text: bytes, header_end: int) -> bool:
    """Whether the C parser gave float() of each field's Decimal, as the live path converts klines.

    It does when every field has at most 15 digits and no exponent: the digits then make an exact integer
    and one division by an exact power of ten rounds correctly, as float() does.
    """
    if text.find(b"e", header_end + 1) >= 0 or text.find(b"E", header_end + 1) >= 0:
        return False
    body = np.frombuffer(text, np.uint8)[header_end + 1 :]
    separators = np.flatnonzero((body == ord(",")) | (body == ord("\n")))
    return len(separators) == 0 or int(np.diff(np.r_[-1, separators]).max()) <= 16


def _decimal_columns(text: bytes, starts: np.ndarray, ends: np.ndarray) -> CandleArrays:
    """The slow exact parse (float() of each Decimal), for files with fields too long for the fast one."""
    rows = [text[a:b].decode("ascii").strip().split(",") for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
    times = np.fromiter((int(row[0]) for row in rows), dtype=np.int64, count=len(rows))
    columns = (np.fromiter((float(Decimal(row[i])) for row in rows), np.float64, len(rows)) for i in range(1, 6))
    return CandleArrays(times, *columns)


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if path.name.endswith(".gz") else raw
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read: {e}") from e


def _line_bounds(text: bytes, header_end: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end offsets of each data row (rows are the lines after the header)."""
    if header_end < 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    newlines = np.flatnonzero(np.frombuffer(text, np.uint8) == 10).astype(np.int64)
    if newlines[-1] != len(text) - 1:
        newlines = np.r_[newlines, len(text)]
    return newlines[:-1] + 1, newlines[1:]


def _parse_columns(path: Path, text: bytes, header_end: int) -> CandleArrays:
    """Fast C parser; on anything odd, a row-by-row pass finds the line and says what is wrong."""
    if header_end < 0 or header_end == len(text) - 1:
        empty_floats = np.zeros(0, np.float64)
        return CandleArrays(np.zeros(0, np.int64), *(empty_floats,) * 5)
    try:
        frame = pd.read_csv(io.BytesIO(text), dtype=np.float64, skip_blank_lines=False, engine="c")
    except (ValueError, pd.errors.ParserError) as e:
        raise DataError(f"{path}: {_diagnose_rows(text) or e}") from e
    values = frame.to_numpy(np.float64)
    if values.shape[1] != 6 or not np.isfinite(values).all():
        raise DataError(f"{path}: {_diagnose_rows(text) or 'non-numeric or missing values'}")
    times = values[:, 0].astype(np.int64)
    if not np.array_equal(times.astype(np.float64), values[:, 0]):
        raise DataError(f"{path}: {_diagnose_rows(text) or 'open_time_ms is not an integer'}")
    return CandleArrays(times, *(np.ascontiguousarray(values[:, i]) for i in range(1, 6)))


def _diagnose_rows(text: bytes) -> str:
    """The first row that does not hold six numbers, as `line N: problem`."""
    for number, line in _numbered_rows(text):
        problem = _row_problem(line)
        if problem is not None:
            return f"line {number}: {problem}"
    return ""


def _numbered_rows(text: bytes) -> Iterable[tuple[int, str]]:
    lines = text.decode("ascii", "replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return enumerate(lines[1:], start=2)


def _row_problem(line: str) -> str | None:
    fields = line.strip().split(",")
    if len(fields) != len(COLUMNS):
        return f"wrong column count: expected {len(COLUMNS)}, found {len(fields)} in {line.strip()!r}"
    if not fields[0].strip().isdigit():
        return f"non-numeric value {fields[0]!r} in column open_time_ms"
    for name, value in zip(COLUMNS[1:], fields[1:], strict=True):
        try:
            if Decimal(value).is_finite():
                continue
        except InvalidOperation:
            pass
        return f"non-numeric value {value!r} in column {name}"
    return None


def _first_problem(a: CandleArrays, timeframe: Timeframe) -> str | None:
    """Vectorised row checks; the message names the first offending line (the header is line 1)."""
    times = a.open_time_ms
    steps = np.diff(times)
    checks: list[tuple[np.ndarray, str]] = [
        (times % timeframe.ms != 0, "open time {t} not aligned to " + str(timeframe)),
        (np.r_[False, steps == 0], "duplicate open time {t}"),
        (np.r_[False, steps < 0], "open time {t} not ascending (earlier than the previous row)"),
        (a.high < a.low, "high {h} below low {l}"),
        (np.minimum(a.open, a.close) < a.low, "open or close below low {l}"),
        (np.maximum(a.open, a.close) > a.high, "open or close above high {h}"),
        (np.minimum(a.open, a.low) <= 0, "non-positive price"),
        (a.volume < 0, "negative volume"),
    ]
    found = [(int(np.argmax(mask)), message) for mask, message in checks if mask.any()]
    if not found:
        return None
    row, message = min(found, key=lambda item: item[0])
    detail = message.format(t=int(times[row]), h=a.high[row], l=a.low[row])
    return f"line {row + 2}: {detail}"
