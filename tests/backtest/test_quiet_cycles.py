"""The quiet-cycle fast path (nothing open in the books: no reconciliation, no exit checks) changes no outcome."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from app.backtest.memory_store import MemoryStore
from app.backtest.report import build_report
from app.backtest.runner import BacktestEngine, BacktestResult, run_backtest
from app.domain.records import OrderRecord, PositionRecord, Purpose, RowStatus
from app.domain.values import OrderType, Side
from tests.backtest.backtest_helpers import backtest_engine, fast_settings

SYMBOLS = ("BTCUSDT", "SOLUSDT")
START, END = datetime(2025, 10, 1, tzinfo=UTC), datetime(2025, 10, 15, tzinfo=UTC)  # the golden span


async def _run(quiet: bool) -> tuple[BacktestEngine, BacktestResult, list[bool]]:
    engine, spec = backtest_engine(fast_settings(backtest_quiet_cycles=quiet), SYMBOLS, START, END, keep_log=True)
    answers: list[bool] = []
    nothing_open = engine.bot.nothing_open
    if nothing_open is not None:  # the same collaborator, counting its answers
        def counted() -> bool:
            answers.append(nothing_open())
            return answers[-1]
        engine.bot.nothing_open = counted
    return engine, await run_backtest(engine, spec), answers


def _books(engine: BacktestEngine) -> dict[str, Any]:
    t = engine.store.tables
    return {
        "trades": list(t.trades.values()), "orders": list(t.orders.values()), "positions": list(t.positions.values()),
        "portfolios": t.portfolios, "dust": t.dust, "last_analyzed": t.last_analyzed,
        "analyses": t.analyses, "decisions": [dataclasses.astuple(d) for d in t.decisions], "tallies": t.tallies,
        "spans": t.spans, "events": t.events, "decision_counts": t.decision_counts, "event_counts": t.event_counts,
    }


async def test_quiet_cycles_leave_trades_decision_log_tallies_and_report_unchanged() -> None:
    fast_engine, fast, answers = await _run(quiet=True)
    full_engine, full, none = await _run(quiet=False)
    assert none == [] and len(answers) == fast.cycles
    quiet = answers.count(True)
    assert fast.cycles * 0.5 < quiet < fast.cycles, "the span should have quiet cycles and cycles with a position"
    assert len(fast.trades) > 10 and fast.trades == full.trades
    assert dataclasses.asdict(fast) == dataclasses.asdict(full)  # equity, balance, rejections, decisions, events...
    fast_books, full_books = _books(fast_engine), _books(full_engine)
    assert fast_books["tallies"] and fast_books["spans"] and fast_books["decisions"]
    assert fast_books == full_books
    assert build_report(fast, fast_engine.candles) == build_report(full, full_engine.candles)


def _entry(status: RowStatus, trade_id: int | None = None) -> OrderRecord:
    return OrderRecord("entry-1", 1, Purpose.ENTRY, "BTCUSDT", Side.BUY, OrderType.MARKET, Decimal("0.01"), status,
                       trade_id=trade_id)


async def test_the_books_are_quiet_only_without_a_position_or_an_entry_in_doubt() -> None:
    now = datetime(2025, 10, 1, tzinfo=UTC)
    store = MemoryStore()
    assert store.nothing_open()
    async with store() as uow:
        await uow.orders.add(_entry(RowStatus.PENDING_SEND), now)  # sent, maybe bought: reconciliation must ask
    assert not store.nothing_open()
    async with store() as uow:
        await uow.orders.mark("entry-1", RowStatus.REJECTED, now)  # final without a fill: nothing to reconcile
    assert store.nothing_open()
    async with store() as uow:
        await uow.positions.add(PositionRecord(1, 1, "BTCUSDT", Decimal("0.01"), Decimal(60000), Decimal(59000),
                                               Decimal(62000), None, now))
    assert not store.nothing_open()  # an open position: exits and protection must look at it
