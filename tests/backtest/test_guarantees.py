"""Determinism, no lookahead and the golden run, on the bundled real candles."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from app.assembly import build_backtest_engine
from app.backtest.command import BacktestOptions, run_command
from tests.backtest.backtest_helpers import SAMPLE, fast_settings, run_span, trade_facts

SYMBOLS = ("BTCUSDT", "SOLUSDT")


def _options(out: Path, seed: int = 42) -> BacktestOptions:
    return BacktestOptions(
        symbols=SYMBOLS, start=datetime(2025, 10, 1, tzinfo=UTC), end=datetime(2025, 10, 8, tzinfo=UTC), data=SAMPLE,
        balance=Decimal("10000"), analyzer="rules", seed=seed, config=None, out=out, quiet=True,
    )


def test_same_inputs_and_seed_give_byte_identical_trades_csv(tmp_path: Path, capsys: object) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    assert run_command(_options(first), build_backtest_engine, time.perf_counter) == 0
    assert run_command(_options(second), build_backtest_engine, time.perf_counter) == 0
    text = (first / "trades.csv").read_bytes()
    assert text.count(b"\n") > 3, "the span should trade"
    assert text == (second / "trades.csv").read_bytes()
    assert (first / "report.json").read_bytes() == (second / "report.json").read_bytes()
    for name in ("report.html", "equity.png", "price_BTCUSDT.png", "price_SOLUSDT.png"):
        assert (first / name).stat().st_size > 1000


def _log(engine: object, before: datetime) -> tuple[list[object], list[object]]:
    tables = engine.store.tables  # type: ignore[attr-defined]
    analyses = [dataclasses.replace(a, id=None) for a in tables.analyses if a.created_at <= before]
    decisions = [dataclasses.astuple(d) for d in tables.decisions if d.created_at <= before]
    return analyses, decisions


async def test_removing_candles_after_t_leaves_every_earlier_decision_unchanged() -> None:
    settings = fast_settings()
    start, cut, end = datetime(2025, 10, 1, tzinfo=UTC), datetime(2025, 10, 3, 14, 35, tzinfo=UTC), \
        datetime(2025, 10, 5, tzinfo=UTC)
    full_engine, full = await run_span(settings, SYMBOLS, start, end, keep_log=True)
    cut_engine, truncated = await run_span(settings, SYMBOLS, start, cut, keep_log=True)
    assert cut_engine.candles.span("BTCUSDT")[1] == cut  # nothing after T was even loaded
    full_log, cut_log = _log(full_engine, cut), _log(cut_engine, cut)
    assert len(cut_log[0]) == 2 * (truncated.cycles) and cut_log == full_log
    entries = [f[:8] for f in trade_facts(full.trades) if f[1] <= cut]
    assert entries and entries == [f[:8] for f in trade_facts(truncated.trades)]


# A fixed real data file (the bundled sample, 2025-10-01 .. 2025-10-15, BTCUSDT + SOLUSDT, seed 42, 10 000 USDT):
# if the engine's behaviour changes on purpose, re-run and update these with the reason in the commit message.
GOLDEN_FINAL_BALANCE = Decimal("10000.8438224488")
GOLDEN_TRADES = 26


async def test_golden_backtest_final_balance() -> None:
    start, end = datetime(2025, 10, 1, tzinfo=UTC), datetime(2025, 10, 15, tzinfo=UTC)
    _, result = await run_span(fast_settings(), SYMBOLS, start, end)
    assert (result.final_balance, len(result.trades)) == (GOLDEN_FINAL_BALANCE, GOLDEN_TRADES)
