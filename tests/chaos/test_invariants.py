"""The chaos checker itself: silent on a clean live run, and naming each planted violation."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from app.config import Settings
from app.domain.values import ExitReason, Side, TradeStatus
from app.services.binance_service import BinanceService
from tests.chaos.invariants import Account, InvariantChecker, Violation
from tests.services.live_harness import KEY, SECRET, SYMBOLS, LiveRun, live_engine, run_hours

pytestmark = pytest.mark.one_engine  # the exchange and the books are under test; the SQL is the engine tests'


async def _check(live: LiveRun) -> list[Violation]:
    checker = InvariantChecker(live.server.base_url, live.container.uow, [Account(live.user_id, KEY, SECRET, SYMBOLS)])
    try:
        return await checker.check()
    finally:
        await checker.aclose()


def _kinds(violations: list[Violation]) -> set[str]:
    return {v.invariant for v in violations}


async def test_the_checker_is_silent_on_a_clean_run_and_names_planted_violations(settings: Settings,
                                                                                 tmp_path: Path) -> None:
    async with live_engine(settings, tmp_path) as live:
        await run_hours(live.container, live.clock, 12)
        trades = await live.trades()
        assert {TradeStatus.CLOSED, TradeStatus.FILLED} <= {t.status for t in trades}
        assert await _check(live) == []

        exchange = BinanceService(KEY, SECRET, live.server.base_url, live.clock)
        stray = await exchange.place_market_order("BTCUSDT", Side.BUY, Decimal("0.001"), "stray-buy-1")
        await exchange.aclose()
        open_trade = next(t for t in trades if t.status == TradeStatus.FILLED)
        async with live.container.uow() as uow:  # closed in the books, its coins never sold
            position = await uow.positions.get(open_trade.id)
            await uow.trades.close(open_trade.id, open_trade.price, ExitReason.MANUAL, Decimal(0), Decimal(0),
                                   Decimal(0), live.clock.now())
            await uow.positions.remove(open_trade.id)
            await uow.commit()
        violations = await _check(live)
    assert position is not None and position.oco_order_id is not None
    by_subject = {(v.invariant, v.subject) for v in violations}
    assert ("fill-without-trade", stray.client_order_id) in by_subject
    assert ("closed-with-coins", f"trade {open_trade.id}") in by_subject
    assert ("orphan-protection", position.oco_order_id) in by_subject
    assert {"quote-balance", "base-balance"} <= _kinds(violations)
