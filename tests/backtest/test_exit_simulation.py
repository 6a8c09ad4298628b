"""The edge test's exit model on hand-made candles: stop first, target at its price, resting stops, timeouts."""

from __future__ import annotations

import numpy as np
import pytest

from app.backtest.exit_simulation import FIVE_MIN_MS, Entries, ExitModel, SymbolTape, exit_prices, simulate

Candle = tuple[float, float, float, float]  # open, high, low, close
FLAT: Candle = (100.0, 100.0, 100.0, 100.0)
NO_COSTS = ExitModel(fee_rate=0.0, slippage=0.0, stop_limit_gap=0.002, timeout_ms=4 * FIVE_MIN_MS)
STOP, TARGET = 99.0, 102.0  # for an entry at 100: 1 % and 2 %


def tape(candles: list[Candle], open_times_ms: list[int] | None = None, end_ms: int | None = None) -> SymbolTape:
    times = np.array(open_times_ms or [i * FIVE_MIN_MS for i in range(len(candles))], dtype=np.int64)
    open_, high, low, close = np.array(candles, dtype=np.float64).T
    return SymbolTape(times, open_, high, low, close, end_ms if end_ms is not None else int(times[-1]) + FIVE_MIN_MS)


def exit_of(candles: list[Candle], model: ExitModel = NO_COSTS, open_times_ms: list[int] | None = None,
            end_ms: int | None = None) -> float:
    prices = exit_prices(tape(candles, open_times_ms, end_ms), np.array([0]), np.array([STOP]), np.array([TARGET]), model)
    return float(prices[0])


def test_the_target_fills_at_its_price_in_the_first_candle_reaching_it() -> None:
    assert exit_of([FLAT, (100, 101, 99.5, 100.5), (100.5, 102.5, 100, 102.4), (102, 103, 98, 99)]) == TARGET


def test_a_candle_reaching_both_triggers_the_stop_first_as_the_matcher_does() -> None:
    assert exit_of([FLAT, (100, 103, 98.9, 101)]) == STOP


def test_a_stop_opened_below_fills_at_the_open_and_a_gap_below_its_limit_rests_until_a_candle_reaches_it() -> None:
    assert exit_of([FLAT, (98.9, 99.5, 98.5, 99)]) == 98.9
    limit = STOP * (1 - NO_COSTS.stop_limit_gap)
    assert exit_of([FLAT, (98, 98.5, 97, 98), (98.2, 98.6, 97.9, 98.4), (98.5, 99.2, 98.1, 99)]) == pytest.approx(limit)


def test_a_stop_still_resting_at_the_timeout_is_sold_at_that_candle_s_close() -> None:
    assert exit_of([FLAT, (98, 98.5, 97, 98), (98, 98.5, 97, 97.5), (97.5, 98, 97, 97.2), (97.2, 97.5, 96, 96.5),
                    (96.5, 110, 96, 105)]) == 96.5


def test_the_timeout_sells_at_the_close_of_its_candle_less_the_slippage() -> None:
    model = ExitModel(fee_rate=0.0, slippage=0.001, stop_limit_gap=0.002, timeout_ms=3 * FIVE_MIN_MS)
    candles = [FLAT, (100, 101, 99.5, 100.5), (100.5, 101, 100, 100.8), (100.8, 101, 100, 101), (101, 110, 90, 105)]
    assert exit_of(candles, model) == pytest.approx(101 * 0.999)


def test_the_timeout_counts_time_across_missing_candles_and_the_run_s_end_cuts_it_short() -> None:
    candles = [FLAT, (100, 101, 99.5, 100.5), (100.5, 101, 100, 100.7), (100, 101, 99.5, 101.5), (101, 110, 90, 105)]
    gap = [0, 1, 2, 6, 7]  # the fourth candle comes 20 minutes late: past the timeout of the entry at minute 5
    assert exit_of(candles, open_times_ms=[i * FIVE_MIN_MS for i in gap]) == 100.7
    assert exit_of(candles, end_ms=2 * FIVE_MIN_MS) == 100.5


def test_returns_are_gross_of_fees_and_net_of_both() -> None:
    model = ExitModel(fee_rate=0.001, slippage=0.0, stop_limit_gap=0.002, timeout_ms=4 * FIVE_MIN_MS)
    entries = Entries(np.array([0]), np.array([0.01]), np.array([0.02]))
    returns = simulate(tape([FLAT, (100, 102.5, 100, 102)]), entries, model)
    assert returns.gross_pct[0] == pytest.approx(2.0)
    assert returns.net_pct[0] == pytest.approx((1.02 * 0.999**2 - 1) * 100)


def test_the_entry_pays_the_slippage_and_its_exits_keep_their_distances_from_the_fill() -> None:
    model = ExitModel(fee_rate=0.0, slippage=0.01, stop_limit_gap=0.002, timeout_ms=4 * FIVE_MIN_MS)
    entries = Entries(np.array([0]), np.array([0.01]), np.array([0.02]))
    returns = simulate(tape([FLAT, (101, 103.1, 101, 103)]), entries, model)  # target 101 x 1.02 = 103.02
    assert returns.gross_pct[0] == pytest.approx(2.0)
