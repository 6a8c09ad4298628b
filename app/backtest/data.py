"""Candles for a backtest: load only what the span needs, check every symbol has data, and place the warm-up."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from app.domain.clock import ms_from_utc
from app.domain.errors import DataError
from app.domain.values import Timeframe
from app.engine.bot import WARM_UP
from app.marketdata.candles import CandleStore

LOAD_MARGIN = timedelta(days=1)  # load a little more, cut on a day boundary so resampled buckets are whole


@dataclass(frozen=True, slots=True)
class BacktestSpan:
    requested_start: datetime
    start: datetime  # first decision: the requested start, or later when the data needs the warm-up first
    end: datetime  # last decision


def load_candles(directory: Path, symbols: Sequence[str], start: datetime, end: datetime) -> CandleStore:
    """Candles from `start` minus the warm-up up to `end`; nothing after `end` is ever loaded."""
    return CandleStore.load(directory, symbols=symbols, start=_load_start(start, end), end=end)


def cut_candles(candles: CandleStore, start: datetime, end: datetime) -> CandleStore:
    """What `load_candles` would load, taken from candles already in memory."""
    return candles.between(_load_start(start, end), end)


def _load_start(start: datetime, end: datetime) -> datetime:
    if start >= end:
        raise DataError(f"--start {start:%Y-%m-%d %H:%M} is not before --end {end:%Y-%m-%d %H:%M}")
    return (start - WARM_UP - LOAD_MARGIN).replace(hour=0, minute=0, second=0, microsecond=0)


def plan_span(candles: CandleStore, symbols: Sequence[str], start: datetime, end: datetime) -> BacktestSpan:
    """The first decision waits until every symbol has 168 hours of history; a symbol without candles in the
    span is an error that names it."""
    first_decision = start
    for symbol in symbols:
        arrays = candles.arrays_between(symbol, Timeframe.M5, ms_from_utc(start), ms_from_utc(end))
        if len(arrays) == 0:
            raise DataError(f"no 5m candles for {symbol} between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M}")
        data_start, _ = candles.span(symbol, Timeframe.M5)
        first_decision = max(first_decision, data_start + WARM_UP)
    if first_decision >= end:
        raise DataError(
            f"not enough history: the first decision needs {WARM_UP.days} days of candles before it, "
            f"so it cannot come before {first_decision:%Y-%m-%d %H:%M}, which is not before --end"
        )
    return BacktestSpan(requested_start=start, start=first_decision, end=end)
