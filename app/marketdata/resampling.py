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
    in the last bit, and the feature builder reads these columns instead of converting candles).

    Only the buckets' own rows are read: a run of consecutive buckets takes one slice of the source.
    """
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
