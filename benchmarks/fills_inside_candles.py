"""Every fill of a year-long backtest against its candle (the check `tests/backtest/test_fills_inside_candles.py` makes
over the bundled sample), on data the tests do not carry:

    PYTHONPATH=. python benchmarks/fills_inside_candles.py --data ../shared/data [--symbols BTCUSDT,ETHUSDT]
                                                           [--start 2025-01-01] [--end 2026-01-01]

Prints the fills by kind (market orders, take-profits, the stop-limit's cases), every fill whose price its candle does
not allow, and the stop exits' count and average P&L; exits 1 when a fill is misplaced.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from app.domain.values import ExitReason
from tests.backtest.backtest_helpers import fast_settings, run_span
from tests.backtest.fill_checks import booked_fills, cases, misplaced, misplaced_exits


def _date(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def check(data: Path, symbols: tuple[str, ...], start: datetime, end: datetime) -> int:
    settings = fast_settings()
    began = time.perf_counter()
    engine, result = await run_span(settings, symbols, start, end, data)
    exchange = await engine.exchanges.for_user(1)
    rules = {symbol: await exchange.get_symbol_rules(symbol) for symbol in symbols}
    fills = booked_fills(engine)
    wrong = [why for fill in fills if (why := misplaced(fill, rules[fill.row.symbol], settings.sim_slippage_pct))]
    wrong += misplaced_exits(engine, result.trades, rules, settings.sim_slippage_pct)
    stops = [t.profit_loss for t in result.trades if t.exit_reason == ExitReason.STOP_LOSS and t.profit_loss]
    print(f"{', '.join(symbols)}  {start:%Y-%m-%d} -> {end:%Y-%m-%d}  ({time.perf_counter() - began:.0f} s)")
    print(f"  trades {len(result.trades)}, final balance {result.final_balance:.2f} USDT")
    if stops:
        print(f"  stop exits {len(stops)}, average P&L {sum(stops, Decimal(0)) / len(stops):.4f} USDT")
    for kind, count in sorted(cases(fills).items()):
        print(f"  {kind:<42} {count:>6}")
    print(f"  misplaced fills and exits: {len(wrong)}")
    for why in wrong[:20]:
        print(f"    {why}")
    return 1 if wrong else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--symbols", default="BTCUSDT,ETHUSDT")
    parser.add_argument("--start", default="2025-01-01")
    parser.add_argument("--end", default="2026-01-01")
    args = parser.parse_args()
    symbols = tuple(s.strip().upper() for s in args.symbols.split(",") if s.strip())
    return asyncio.run(check(args.data, symbols, _date(args.start), _date(args.end)))


if __name__ == "__main__":
    sys.exit(main())
