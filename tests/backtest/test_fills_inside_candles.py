"""No fill outside its candle: every fill of a backtest over the whole bundled sample (four symbols, Sep-Dec 2025:
more than a symbol-year of real 5m candles) against the candle it filled in. A year of one pair of the shared data:
`benchmarks/fills_inside_candles.py`."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.backtest.backtest_helpers import fast_settings, run_span
from tests.backtest.fill_checks import booked_fills, cases, misplaced, misplaced_exits

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")


async def test_every_fill_of_four_months_of_four_symbols_lies_in_its_candle() -> None:
    settings = fast_settings()
    engine, result = await run_span(settings, SYMBOLS, datetime(2025, 9, 1, tzinfo=UTC),
                                    datetime(2026, 1, 1, tzinfo=UTC))
    exchange = await engine.exchanges.for_user(1)
    rules = {symbol: await exchange.get_symbol_rules(symbol) for symbol in SYMBOLS}
    fills = booked_fills(engine)
    wrong = [why for fill in fills if (why := misplaced(fill, rules[fill.row.symbol], settings.sim_slippage_pct))]
    assert wrong == [], f"{len(wrong)} of {len(fills)} fills misplaced, e.g. {wrong[:3]}"
    assert misplaced_exits(engine, result.trades, rules, settings.sim_slippage_pct) == []
    seen = cases(fills)
    # what the run exercised (no candle of the sample opens below a stop: open and previous close hardly differ)
    assert seen["stop-limit, through the stop"] > 100 and seen["LIMIT_MAKER SELL"] > 30, seen
    assert seen["MARKET BUY"] == len(result.trades) and seen["MARKET SELL"] > 50, seen
