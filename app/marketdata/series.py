"""One symbol and timeframe in memory: float columns for indicator math, exact Decimal candles on demand."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from app.domain.values import Candle

_CANDLE_CACHE_SIZE = 1024  # per series: a few windows of recent candles (each one ~350 bytes as Decimals)


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


class CandleSeries:
    """One symbol and timeframe: float arrays for speed, exact Decimal candles built on demand."""

    # whether every value has at most 15 significant digits, so that float() of it is one-to-one and its float
    # column identifies it exactly (the resampler then sums volumes without building Decimals)
    short_decimals = False

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

    def sliced(self, start: int, stop: int) -> CandleSeries:
        raise NotImplementedError

    def compact(self) -> CandleSeries:
        """A copy holding only its own rows: a slice keeps the whole file's text and columns alive."""
        raise NotImplementedError

    def _copied_arrays(self) -> CandleArrays:
        return CandleArrays(*(column.copy() for column in self.arrays.columns()))

    def decimal_volumes(self) -> list[Decimal]:
        return [self.candle(i).volume for i in range(len(self.arrays))]


class TextSeries(CandleSeries):
    """Candles read from a file; each row's text is kept so prices parse into Decimal exactly as written."""

    def __init__(self, arrays: CandleArrays, text: bytes, line_starts: np.ndarray, line_ends: np.ndarray,
                 short_decimals: bool = False) -> None:
        super().__init__(arrays)
        self._text = text
        self._starts = line_starts
        self._ends = line_ends
        self.short_decimals = short_decimals

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

    def sliced(self, start: int, stop: int) -> TextSeries:
        return TextSeries(self.arrays.slice(start, stop), self._text, self._starts[start:stop], self._ends[start:stop],
                          self.short_decimals)

    def compact(self) -> TextSeries:
        if len(self.arrays) == 0:
            return TextSeries(self._copied_arrays(), b"", self._starts.copy(), self._ends.copy(), self.short_decimals)
        begin, finish = int(self._starts[0]), int(self._ends[-1])
        return TextSeries(self._copied_arrays(), self._text[begin:finish], self._starts - begin, self._ends - begin,
                          self.short_decimals)

    def decimal_volumes(self) -> list[Decimal]:
        """Every row's volume exactly as `_build_candle` reads it, without building whole candles."""
        text = self._text
        return [
            Decimal(text[a:b].decode("ascii").strip().rsplit(",", 1)[1])
            for a, b in zip(self._starts.tolist(), self._ends.tolist(), strict=True)
        ]



class MergedSeries(CandleSeries):
    """Two series with no open time in common, interleaved by open time; each candle is built by the series that
    holds it (a file's rows stay its text, resampled rows stay built from their 5m rows)."""

    def __init__(self, arrays: CandleArrays, parts: tuple[CandleSeries, CandleSeries], in_second: np.ndarray,
                 rows: np.ndarray) -> None:
        super().__init__(arrays)
        self._parts = parts
        self._in_second = in_second  # per row: whether parts[1] holds it (else parts[0])
        self._rows = rows  # per row: its index in the part that holds it

    @classmethod
    def of(cls, first: CandleSeries, second: CandleSeries) -> MergedSeries:
        """Both series' rows in open-time order (vectorised: one stable sort of the open times)."""
        columns = zip(first.arrays.columns(), second.arrays.columns(), strict=True)
        joined = [np.concatenate(pair) for pair in columns]
        order = np.argsort(joined[0], kind="stable")
        count = len(first.arrays)
        in_second = order >= count
        arrays = CandleArrays(*(column[order] for column in joined))
        return cls(arrays, (first, second), in_second, np.where(in_second, order - count, order))

    def _part(self, index: int) -> tuple[CandleSeries, int]:
        return self._parts[1 if self._in_second.item(index) else 0], self._rows.item(index)

    def _build_candle(self, index: int) -> Candle:
        part, row = self._part(index)
        return part.candle(row)

    def close(self, index: int) -> Decimal:
        found = self._cache.get(index)
        if found is not None:
            return found.close
        part, row = self._part(index)
        return part.close(row)

    def sliced(self, start: int, stop: int) -> MergedSeries:
        return MergedSeries(self.arrays.slice(start, stop), self._parts, self._in_second[start:stop],
                            self._rows[start:stop])

    def compact(self) -> MergedSeries:
        """Each part cut to the rows this series still holds (they are consecutive in the part: both are sorted)."""
        rows = self._rows.copy()
        parts = []
        for number, part in enumerate(self._parts):
            mine = self._in_second == bool(number)
            low = int(rows[mine].min()) if mine.any() else 0
            high = int(rows[mine].max()) + 1 if mine.any() else 0
            parts.append(part.sliced(low, high).compact())
            rows[mine] -= low
        return MergedSeries(self._copied_arrays(), (parts[0], parts[1]), self._in_second.copy(), rows)


class MemorySeries(CandleSeries):
    """Candles already built (e.g. fetched from a venue), with float columns made from them."""

    def __init__(self, candles: Sequence[Candle]) -> None:
        self._candles = tuple(candles)
        prices = [(float(c.open), float(c.high), float(c.low), float(c.close), float(c.volume)) for c in self._candles]
        columns = np.array(prices, dtype=np.float64).reshape(-1, 5).T.copy()  # one contiguous row per column
        times = np.array([c.open_time_ms for c in self._candles], dtype=np.int64)
        super().__init__(CandleArrays(times, *columns))

    def _build_candle(self, index: int) -> Candle:
        return self._candles[index]

    def sliced(self, start: int, stop: int) -> MemorySeries:
        return MemorySeries(self._candles[start:stop])

    def compact(self) -> MemorySeries:
        return self  # holds nothing but its own rows
