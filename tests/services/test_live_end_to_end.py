"""The whole trade flow through the real Binance adapter and HTTP against the simulator: the same books as paper."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import Settings
from app.container import Container, LiveExchanges
from app.domain.clock import SimulatedClock
from app.domain.records import TradeRecord
from app.domain.values import ExitReason
from tests.services.live_harness import START, add_user, live_engine, run_hours

pytestmark = pytest.mark.one_engine  # the adapter and HTTP path are under test; the SQL is the engine tests'


async def _with_a_manual_close(container: Container, user_id: int) -> list[TradeRecord]:
    trade = next((t for t in await container.bot_trades(user_id) if t.exit_reason is None), None)
    if trade is not None:  # one manual close, through the same path as the API's
        await container.bot.close_trade(user_id, trade.id, ExitReason.MANUAL)
    return await container.bot_trades(user_id)


def _facts(trades: list[TradeRecord]) -> list[tuple[object, ...]]:
    return [(t.symbol, t.executed_at, t.amount, t.price, t.stop_loss, t.take_profit, t.exit_reason, t.exit_price,
             t.fees, t.profit_loss, t.closed_at) for t in trades]


async def test_live_adapter_through_the_simulator_books_what_paper_books(settings: Settings, tmp_path: Path) -> None:
    async with live_engine(settings, tmp_path) as live:
        assert isinstance(live.container.exchanges, LiveExchanges)
        await run_hours(live.container, live.clock, 48)
        live_trades = await _with_a_manual_close(live.container, live.user_id)
        await live.assert_books_match_the_exchange()
    paper_clock = SimulatedClock(START)
    paper = Container(settings, market_clock=paper_clock)
    user_id = await add_user(paper, paper_clock, None)
    await run_hours(paper, paper_clock, 48)
    paper_trades = await _with_a_manual_close(paper, user_id)
    await paper.db.dispose()
    reasons = {t.exit_reason for t in live_trades}
    assert {ExitReason.MANUAL, ExitReason.TIMEOUT} <= reasons, reasons
    assert reasons & {ExitReason.TAKE_PROFIT, ExitReason.STOP_LOSS}, reasons
    assert _facts(live_trades) == _facts(paper_trades)
