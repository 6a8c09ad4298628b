"""Candles for a backtest: load only what the span needs, check every symbol has data, and place the warm-up."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.domain.clock import ms_from_utc, utc_from_ms
from app.domain.errors import DataError
from app.domain.values import Timeframe
from app.engine.bot import CANDLES, WARM_UP
from app.marketdata.candles import CandleStore

LOAD_MARGIN = timedelta(days=1)  # load a little more, cut on a day boundary so resampled buckets are whole


@dataclass(frozen=True, slots=True)
class BacktestSpan:
    requested_start: datetime
    start: datetime  # first decision: the requested start, or later when the data needs the warm-up first
    end: datetime  # last decision
    warnings: tuple[str, ...] = ()  # where the data does not cover what was asked, in the user's words


def load_candles(directory: Path, symbols: Sequence[str] | None, start: datetime, end: datetime) -> CandleStore:
    """Candles from `start` minus the warm-up up to `end`; nothing after `end` is ever loaded."""
    return CandleStore.load(directory, symbols=symbols, start=_load_start(start, end), end=end)


def cut_candles(candles: CandleStore, start: datetime, end: datetime) -> CandleStore:
    """What `load_candles` would load, taken from candles already in memory."""
    return candles.between(_load_start(start, end), end)


def _load_start(start: datetime, end: datetime) -> datetime:
    if start >= end:
        raise DataError(f"--start {start:%Y-%m-%d %H:%M} is not before --end {end:%Y-%m-%d %H:%M}")
    return (start - WARM_UP - LOAD_MARGIN).replace(hour=0, minute=0, second=0, microsecond=0)


def plan_span(candles: CandleStore, symbols: Sequence[str], start: datetime, end: datetime,
              start_requested: bool = True, candidates: Sequence[str] = ()) -> BacktestSpan:
    """The first decision waits until every symbol's windows are full (288 x 5m, 100 x 15m, 168 x 1h closed
    candles); a symbol without candles in the span is an error that names it, and data that begins too late for
    a requested start or ends before the end is a warning (`start_requested=False`: the start is the data's own,
    and waiting for the warm-up is expected)."""
    first_decision, warnings = start, []
    for symbol in symbols:
        _require_candles(candles, symbol, start, end)
        ready, firsts = _ready_at(candles, symbol, end)
        first_decision = max(first_decision, ready)
        if start_requested and ready > start:
            warnings.append(_late_start(symbol, firsts, start, ready))
        warnings += _ends_early(candles, symbol, end)
    if candidates:  # a top:N rule's: decisions start when the first of them is ready; the rest join when they are
        ready_times = [_ready_at(candles, s, end)[0] for s in candidates if _has_history(candles, s, end)]
        if not ready_times:
            raise DataError(f"no symbol in the data has enough history for a decision before --end {_at(end)}")
        first_decision = max(first_decision, min(ready_times))
    if first_decision >= end:
        raise DataError(
            f"not enough history: every symbol's analysis needs {_windows()} closed candles before a decision, "
            f"so the first cannot come before {_at(first_decision)}, which is not before --end {_at(end)}"
        )
    if start_requested and first_decision > start and len(symbols) > 1:
        warnings.append(f"decisions for every symbol start at {_at(first_decision)}, when the last one is ready")
    return BacktestSpan(requested_start=start, start=first_decision, end=end, warnings=tuple(warnings))


def _has_history(candles: CandleStore, symbol: str, end: datetime) -> bool:
    return all(len(candles.arrays_between(symbol, timeframe, 0, ms_from_utc(end))) >= count
               for timeframe, count in CANDLES.items())


def _require_candles(candles: CandleStore, symbol: str, start: datetime, end: datetime) -> None:
    arrays = candles.arrays_between(symbol, Timeframe.M5, ms_from_utc(start), ms_from_utc(end))
    if len(arrays) == 0:
        raise DataError(f"no 5m candles for {symbol} between {_at(start)} and {_at(end)}: the span has no data "
                        f"for it (15m and 1h are built from 5m where their own files have none)")


def _ready_at(candles: CandleStore, symbol: str, end: datetime) -> tuple[datetime, dict[Timeframe, datetime]]:
    """When every window of the symbol is full, and each timeframe's first loaded candle."""
    ready, firsts = datetime.min.replace(tzinfo=UTC), {}
    for timeframe, count in CANDLES.items():
        times = candles.arrays_between(symbol, timeframe, 0, ms_from_utc(end)).open_time_ms
        if len(times) < count:
            raise DataError(f"not enough history for {symbol}: {len(times)} {timeframe} candles open before --end "
                            f"{_at(end)}, and its analysis needs {count} before a decision")
        ready = max(ready, utc_from_ms(int(times[count - 1]) + timeframe.ms))
        firsts[timeframe] = utc_from_ms(int(times[0]))
    return ready, firsts


def _late_start(symbol: str, firsts: dict[Timeframe, datetime], start: datetime, ready: datetime) -> str:
    """Which timeframes begin too late to fill their window by `start` (else gaps in the candles are why)."""
    late = [f"{timeframe} at {_at(first)}" for timeframe, first in firsts.items()
            if first > start - CANDLES[timeframe] * timedelta(milliseconds=timeframe.ms)]
    why = f"its candles start too late ({', '.join(late)})" if late else "gaps in its candles"
    return (f"{symbol}: {why} for full windows ({_windows()}) at {_at(start)}: its first complete analysis "
            f"is at {_at(ready)}")


def _ends_early(candles: CandleStore, symbol: str, end: datetime) -> list[str]:
    _, data_end = candles.span(symbol, Timeframe.M5)
    if data_end >= end:
        return []
    return [f"{symbol}: its 5m candles end at {_at(data_end)}, before --end {_at(end)}: "
            f"later decisions see no new candles for it"]


def _windows() -> str:
    return ", ".join(f"{count} x {timeframe}" for timeframe, count in CANDLES.items())


def _at(when: datetime) -> str:
    return f"{when:%Y-%m-%d %H:%M}"
