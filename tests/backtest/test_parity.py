"""Parity: the live path (API, database, DB-backed paper exchange, TradingLoop) makes exactly the backtest's trades."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx

from app.config import Settings
from app.container import Container
from app.domain.clock import SimulatedClock
from app.domain.values import SKIPS_FROM_SPANS, Decision, ExitReason
from app.engine.loop import TradingLoop
from app.main import create_app
from tests.backtest.backtest_helpers import run_span, trade_facts
from tests.conftest import register

SYMBOLS = ("BTCUSDT", "ETHUSDT")
START = datetime(2025, 9, 10, 12, tzinfo=UTC)
END = datetime(2025, 9, 11, 12, tzinfo=UTC)


class StoppingClock(SimulatedClock):
    """Simulated time for the live loop that parks the loop once its next cycle would pass `end`."""

    def __init__(self, start: datetime, end: datetime) -> None:
        super().__init__(start)
        self.end = end
        self.finished = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        if self.now() + timedelta(seconds=seconds) > self.end:
            self.finished.set()
            await asyncio.Event().wait()  # parked until the test stops the loop
        await super().sleep(seconds)


async def _live_trades(settings: Settings) -> tuple[list[tuple[object, ...]], dict[str, int]]:
    clock = StoppingClock(START - timedelta(minutes=5), END)
    container = Container(settings, market_clock=clock)
    transport = httpx.ASGITransport(app=create_app(container))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        headers, user_id = await register(client)
        answer = await client.put("/trading/config", headers=headers, json={"symbols": list(SYMBOLS)})
        assert answer.status_code == 200, answer.text
        assert (await client.post("/trading/start", headers=headers)).status_code == 200
        loop = TradingLoop(container.bot, clock, settings.trading_interval_seconds)
        loop.start()
        await asyncio.wait_for(clock.finished.wait(), timeout=600)
        await loop.stop()
        async with container.uow() as uow:
            for position in await uow.positions.for_user(user_id):
                await container.bot.close_trade(user_id, position.trade_id, ExitReason.MANUAL)
            trades, _ = await uow.trades.page(user_id, limit=1000)
            decisions = await uow.analyses.for_user(user_id, limit=100000)
    await container.db.dispose()
    counts: dict[str, int] = {}
    for record in decisions:
        assert record.decision is not None
        counts[record.decision.value] = counts.get(record.decision.value, 0) + 1
    return trade_facts(trades), counts


async def test_live_loop_through_the_api_and_database_makes_the_backtests_trades(settings: Settings) -> None:
    live, live_decisions = await _live_trades(settings)
    engine, result = await run_span(settings, SYMBOLS, START, END, keep_log=True)
    backtest = trade_facts(result.trades)
    assert len(backtest) >= 3, "the span should trade, or parity proves little"
    assert live == backtest
    # the backtest's own rows and its tallied-only skips (holds, symbols held) are the live decision log: the user's
    # rows plus the analyses inside the user's decision spans
    tables = engine.store.tables
    counts: dict[str, int] = {}
    for row in tables.decisions:
        counts[row.decision.value] = counts.get(row.decision.value, 0) + 1
    tallied = sum(t.count for t in tables.tallies if t.decision == Decision.SKIPPED and t.reason in SKIPS_FROM_SPANS)
    assert tallied > counts.get(Decision.SKIPPED.value, 0), "most of the span holds"
    counts[Decision.SKIPPED.value] = counts.get(Decision.SKIPPED.value, 0) + tallied
    assert live_decisions == counts and counts[Decision.EXECUTED.value] == len(backtest)
