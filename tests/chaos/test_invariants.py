"""The chaos checker itself: silent on a clean live run, and naming each planted violation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from app.config import Settings
from app.db import Database, upgrade
from app.domain.records import OrderRecord, PositionRecord, Remainder, TradeRecord
from app.domain.values import ExitReason, Side, TradeStatus
from app.repositories import UnitOfWorkFactory
from app.venues.binance.client import BinanceService
from tests.bundled import bundled_rules
from tests.chaos.invariants import (
    Account,
    Books,
    ExchangeSnapshot,
    InvariantChecker,
    Picture,
    Violation,
    base_balances,
    protection,
    quote_balance,
    read_books,
)
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


# ----- the rules on small pictures ---------------------------------------------------------------------------------

SOL = bundled_rules()["SOLUSDT"]
T0 = datetime(2025, 9, 8, tzinfo=UTC)


def _trade(trade_id: int, status: TradeStatus = TradeStatus.FILLED) -> TradeRecord:
    return TradeRecord(trade_id, 1, "SOLUSDT", "BUY", status, Decimal("1"), Decimal("100"), Decimal("98"),
                       Decimal("103"), 90, f"trd1-SOLUSDT-{trade_id}", Decimal("0.1"), T0)


def _picture(books: Books, usdt: str, sol: str) -> Picture:
    exchange = ExchangeSnapshot((), (), {"USDT": Decimal(usdt), "SOL": Decimal(sol)}, {}, {"SOLUSDT": SOL})
    return Picture(exchange, books)


def _books(positions: list[PositionRecord], exits: dict[int, list[OrderRecord]] | None = None,
           closing: dict[int, str] | None = None) -> Books:
    return Books(1, Decimal("10000"), [_trade(7)], positions, {"SOLUSDT": Remainder()}, {}, exits or {}, closing or {})


def test_a_position_being_closed_needs_no_live_protection() -> None:
    position = PositionRecord(7, 1, "SOLUSDT", Decimal("0.999"), Decimal("100"), Decimal("98"), Decimal("103"), None, T0)
    assert [v.invariant for v in protection(_picture(_books([position]), "9900", "0.999"))] == ["unprotected"]
    assert protection(_picture(_books([position], closing={7: "TIMEOUT"}), "9900", "0.999")) == []


def test_the_quote_balance_counts_what_an_unfinished_exit_already_sold() -> None:
    # a position being closed keeps the amount it held; its exit rows say what was sold
    position = PositionRecord(7, 1, "SOLUSDT", Decimal("0.999"), Decimal("100"), Decimal("98"), Decimal("103"), None, T0)
    sold = OrderRecord("trd1-SOLUSDT-7-x", 1, "exit", "SOLUSDT", "SELL", "MARKET", Decimal("0.999"), "EXPIRED",
                       trade_id=7, executed_qty=Decimal("0.5"), cumulative_quote_qty=Decimal("51"),
                       commission=Decimal("0.051"), commission_asset="USDT")
    books = _books([position], exits={7: [sold]}, closing={7: "TIMEOUT"})
    assert quote_balance(_picture(books, "9950.949", "0.499")) == []  # 10000 - 100 + (51 - 0.051)
    assert base_balances(_picture(books, "9950.949", "0.499")) == []
    [violation] = quote_balance(_picture(books, "9900", "0.499"))
    assert "difference -50.949" in violation.detail


async def test_positions_being_closed_are_read_from_the_books(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/books.db"
    await asyncio.to_thread(upgrade, url)
    database = Database(url)
    uow = UnitOfWorkFactory(database.sessions)
    async with uow() as session:
        user = await session.users.add("u", "u@example.com", "-", T0)
        await session.portfolios.create(user.id, Decimal("10000"), T0)
        trade = await session.trades.add(_trade(0))
        await session.positions.add(PositionRecord(trade.id, user.id, "SOLUSDT", Decimal("0.999"), Decimal("100"),
                                                   Decimal("98"), Decimal("103"), None, T0))
        await session.commit()
    assert (await read_books(uow, user.id, ["SOLUSDT"], [])).closing == {}
    async with uow() as session:
        await session.positions.mark_closing(trade.id, ExitReason.TIMEOUT)
        await session.commit()
    assert (await read_books(uow, user.id, ["SOLUSDT"], [])).closing == {trade.id: "TIMEOUT"}
    await database.dispose()
