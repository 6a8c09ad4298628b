"""Long entries run to their exits over 5m float candles, many at once: the edge test's fast model of the paper venue.

The same rules as the engine on the simulated exchange, in floats (a statistic, not a book; no tick or step rounding):
the entry buys at its cycle's close plus the slippage, the OCO rests from the next candle, a candle whose low reaches
the stop triggers the stop first (the matcher's order), else the target fills at its price when the high reaches it;
a triggered stop fills by `triggered_stop_limit_sell_price` and, when the whole candle is below its limit, rests
until a candle reaches the limit; the timeout (or the run's end) sells at that candle's close less the slippage.
The entry's fee is taken in the base asset and the exit's in USDT, both at the fee rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import numpy as np

from app.domain.clock import ms_from_utc
from app.domain.values import Timeframe
from app.marketdata.candles import CandleStore
from app.venues.paper.fill_rules import resting_limit_sell_price, triggered_stop_limit_sell_price

FIVE_MIN_MS = Timeframe.M5.ms
_CELLS_PER_CHUNK = 2_000_000  # entries x window candles held at once (a few tens of MB of columns)


@dataclass(frozen=True, slots=True)
class ExitModel:
    """The simulated venue's costs and exit rules, as fractions."""

    fee_rate: float
    slippage: float  # market orders and a stop the candle trades through
    stop_limit_gap: float  # the stop-limit's limit below its trigger
    timeout_ms: int

    @classmethod
    def of(cls, fee_rate: Decimal, slippage_pct: Decimal, stop_limit_gap_pct: Decimal,
           timeout_minutes: int) -> ExitModel:
        return cls(float(fee_rate), float(slippage_pct) / 100, float(stop_limit_gap_pct) / 100, timeout_minutes * 60_000)

    @property
    def window_candles(self) -> int:
        return max(1, self.timeout_ms // FIVE_MIN_MS)


@dataclass(frozen=True, slots=True)
class SymbolTape:
    """One symbol's 5m candles closing within a run (an entry can fill at each close) as float columns."""

    open_time_ms: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    end_ms: int  # the run's last decision: positions still open are sold at the close before it

    @classmethod
    def of(cls, candles: CandleStore, symbol: str, start: datetime, end: datetime) -> SymbolTape:
        end_ms = ms_from_utc(end)
        arrays = candles.arrays_between(symbol, Timeframe.M5, ms_from_utc(start) - FIVE_MIN_MS, end_ms - FIVE_MIN_MS + 1)
        return cls(arrays.open_time_ms, arrays.open, arrays.high, arrays.low, arrays.close, end_ms)

    def __len__(self) -> int:
        return len(self.open_time_ms)

    def entry_row(self, at: datetime) -> int:
        """The row whose close an entry at `at` buys at: the last candle closed by then (-1 if none)."""
        return int(self.open_time_ms.searchsorted(ms_from_utc(at) - FIVE_MIN_MS, side="right")) - 1


@dataclass(frozen=True, slots=True)
class Entries:
    """Entries of one symbol: the row each buys at the close of, and its stop and target distances (fractions)."""

    rows: np.ndarray
    stop_distance: np.ndarray
    target_distance: np.ndarray


@dataclass(frozen=True, slots=True)
class Returns:
    """Each entry's round trip in % of its cost: before fees (gross) and after both fees (net)."""

    gross_pct: np.ndarray
    net_pct: np.ndarray


def simulate(tape: SymbolTape, entries: Entries, model: ExitModel) -> Returns:
    """Every entry's round trip, in chunks that bound memory."""
    chunk = max(1, _CELLS_PER_CHUNK // model.window_candles)
    entry = tape.close[entries.rows] * (1 + model.slippage)
    exits = np.empty_like(entry)
    for first in range(0, len(entry), chunk):
        part = slice(first, first + chunk)
        exits[part] = exit_prices(tape, entries.rows[part], entry[part] * (1 - entries.stop_distance[part]),
                                  entry[part] * (1 + entries.target_distance[part]), model)
    ratio = exits / entry
    return Returns((ratio - 1) * 100, (ratio * (1 - model.fee_rate) ** 2 - 1) * 100)


def exit_prices(tape: SymbolTape, rows: np.ndarray, stop: np.ndarray, target: np.ndarray,
                model: ExitModel) -> np.ndarray:
    """Where each position bought at the close of `rows` is sold: stop, target, or timeout at the close."""
    window = rows[:, None] + 1 + np.arange(model.window_candles)
    inside = window < len(tape)
    window = np.minimum(window, len(tape) - 1)
    deadline_ms = np.minimum(tape.open_time_ms[rows] + FIVE_MIN_MS + model.timeout_ms, tape.end_ms)
    inside &= tape.open_time_ms[window] + FIVE_MIN_MS <= deadline_ms[:, None]  # a prefix: open times increase
    last_rows = rows + inside.sum(axis=1)  # the last candle closed by the deadline (the entry's own if none)
    stopped = inside & (tape.low[window] <= stop[:, None])
    touched = stopped | (inside & (tape.high[window] >= target[:, None]))
    hit = touched.any(axis=1)
    first = touched.argmax(axis=1)
    by_stop = hit & stopped[np.arange(len(rows)), first]
    prices = tape.close[last_rows] * (1 - model.slippage)
    by_target = hit & ~by_stop
    prices[by_target] = target[by_target]
    for i in np.flatnonzero(by_stop).tolist():
        prices[i] = stop_exit_price(tape, int(rows[i] + 1 + first[i]), int(last_rows[i]), float(stop[i]), model)
    return prices


def stop_exit_price(tape: SymbolTape, row: int, last_row: int, stop: float, model: ExitModel) -> float:
    """A stop triggered in `row`: its fill there, else at the first later candle reaching the limit, else the
    timeout's market sell at the close of `last_row`."""
    limit = stop * (1 - model.stop_limit_gap)
    price = triggered_stop_limit_sell_price(tape.open.item(row), tape.high.item(row), tape.low.item(row), stop, limit,
                                            model.slippage)
    for later in range(row + 1, last_row + 1):
        if price is not None:
            break
        price = resting_limit_sell_price(tape.open.item(later), tape.high.item(later), limit)
    return price if price is not None else tape.close.item(last_row) * (1 - model.slippage)
