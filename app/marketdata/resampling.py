"""Coarser candles (15m, 1h) built from 5m rows the way Binance aggregates them, exact to the last bit."""

from __future__ import annotations

from decimal import Decimal

import numpy as np

from app.domain.values import Candle, Timeframe
from app.marketdata.series import CandleArrays, CandleSeries


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


def resample(source: CandleSeries, timeframe: Timeframe) -> ResampledSeries:
    """Binance-style aggregation: a bucket is emitted for whatever 5m candles exist in it (partial at gaps)."""
    a = source.arrays
    buckets = a.open_time_ms // timeframe.ms * timeframe.ms
    if len(buckets) == 0:
        return ResampledSeries(a, source, np.zeros(0, np.int64), np.zeros(0, np.int64))
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
    return ResampledSeries(arrays, source, first, last)


def _bucket_volumes(source: CandleSeries, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """float() of each bucket's exact Decimal volume sum, as the resampled Candle holds it (a float sum can differ
    in the last bit, and the feature builder reads these columns instead of converting candles)."""
    volumes = source.decimal_volumes()
    sums = (sum(volumes[int(a) : int(b) + 1], Decimal(0)) for a, b in zip(first, last, strict=True))
    return np.fromiter((float(total) for total in sums), dtype=np.float64, count=len(first))

