"""Coarser candles (15m, 1h) built from 5m rows the way Binance aggregates them, exact to the last bit."""

from __future__ import annotations

from decimal import Decimal

import numpy as np

from app.domain.values import Candle, Timeframe
from app.marketdata.series import CandleArrays, CandleSeries, MergedSeries


class ResampledSeries(CandleSeries):
    """Coarser candles built from 5m rows `first[i]..last[i]` of a source series."""

    def __init__(self, arrays: CandleArrays, source: CandleSeries, first: np.ndarray, last: np.ndarray) -> None:
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

    def sliced(self, start: int, stop: int) -> ResampledSeries:
        return ResampledSeries(
            self.arrays.slice(start, stop), self._source, self._first[start:stop], self._last[start:stop]
        )

    def compact(self) -> ResampledSeries:
        low = int(self._first[0]) if len(self._first) else 0
        high = int(self._last[-1]) + 1 if len(self._last) else 0
        source = self._source.sliced(low, high).compact()
        return ResampledSeries(self._copied_arrays(), source, self._first - low, self._last - low)


def resample(source: CandleSeries, timeframe: Timeframe, skip_open_ms: np.ndarray | None = None) -> ResampledSeries:
    """Binance-style aggregation: a bucket is emitted for whatever 5m candles exist in it (partial at gaps).

    Buckets whose open time is in `skip_open_ms` (sorted) are left out: their candles come from elsewhere.
    """
    a = source.arrays
    buckets = a.open_time_ms // timeframe.ms * timeframe.ms
    if len(buckets) == 0:
        return ResampledSeries(a, source, np.zeros(0, np.int64), np.zeros(0, np.int64))
    first = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
    last = np.r_[first[1:] - 1, len(buckets) - 1]
    # float() is monotonic, so max/min of the floats is float() of the Decimal max/min
    high, low = np.maximum.reduceat(a.high, first), np.minimum.reduceat(a.low, first)
    if skip_open_ms is not None and len(skip_open_ms):
        kept = ~np.isin(buckets[first], skip_open_ms, assume_unique=True)
        first, last, high, low = first[kept], last[kept], high[kept], low[kept]
    arrays = CandleArrays(
        buckets[first], a.open[first], high, low, a.close[last], _bucket_volumes(source, first, last)
    )
    return ResampledSeries(arrays, source, first, last)


def complete_from_5m(own: CandleSeries, five: CandleSeries, timeframe: Timeframe) -> CandleSeries:
    """A coarser series with, for every bucket it lacks and the 5m series has rows in, the resampled candle: before
    its first candle, after its last and inside its gaps. Where it has a candle, its own candle is kept."""
    filled = resample(five, timeframe, skip_open_ms=own.arrays.open_time_ms)
    if len(filled.arrays) == 0:
        return own
    return MergedSeries.of(own, filled)


def _bucket_volumes(source: CandleSeries, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """float() of each bucket's exact Decimal volume sum, as the resampled Candle holds it (a float sum can differ
    in the last bit, and the feature builder reads these columns instead of converting candles)."""
    sums = _short_decimal_sums(source.arrays.volume, first, last) if source.short_decimals else None
    return sums if sums is not None else _decimal_sums(source, first, last)


def _short_decimal_sums(values: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray | None:
    """The same sums, vectorised, from floats of decimals with at most 15 significant digits.

    float() is one-to-one on such decimals, so a scale 10**k that turns every float into an integer n below 10**15
    with float(n / 10**k) equal to it recovers each decimal exactly as n / 10**k. The int64 sums of a bucket's n
    are then exact, and below 2**53 one float division rounds each as float(Decimal) does. None when no such
    scale exists (or a sum is too large): the Decimal sums are needed then.
    """
    counts = last - first + 1
    offsets = np.cumsum(counts) - counts  # each bucket's first row among the picked rows
    picked = values[np.arange(int(counts.sum())) + np.repeat(first - offsets, counts)]
    for places in range(16):
        scale = 10.0**places
        units = np.rint(picked * scale)
        if len(units) and np.abs(units).max() >= 1e15:
            return None
        if np.array_equal(units / scale, picked):
            sums = np.add.reduceat(units.astype(np.int64), offsets) if len(units) else np.zeros(0, np.int64)
            return sums / scale if len(sums) == 0 or np.abs(sums).max() < 2**53 else None
    return None


def _decimal_sums(source: CandleSeries, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """The same sums from each row's Decimal; a run of consecutive buckets reads one slice of the source."""
    totals: list[Decimal] = []
    breaks = np.flatnonzero(first[1:] != last[:-1] + 1) + 1
    for run_first, run_last in zip(np.split(first, breaks), np.split(last, breaks), strict=True):
        if len(run_first) == 0:
            continue
        low = int(run_first[0])
        volumes = source.sliced(low, int(run_last[-1]) + 1).decimal_volumes()
        totals.extend(sum(volumes[a - low : b - low + 1], Decimal(0))
                      for a, b in zip(run_first.tolist(), run_last.tolist(), strict=True))
    return np.fromiter((float(total) for total in totals), dtype=np.float64, count=len(totals))
