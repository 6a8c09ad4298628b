"""Issue 15's seven ways an exchange hiccup used to strand coins or books, each checked against the exchange's view.

The paper exchange (the simulated venue, kept in the database) stands in for Binance; one of its methods is
replaced on the user's instance to fail once at the step under test, as the port would.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from app.config import Settings
from app.container import Container
from app.domain.clock import SimulatedClock
from app.domain.errors import OrderNotFound, OrderStatusUnknown, RateLimited, RuleViolation, TemporaryExchangeError
from app.domain.records import TradeRecord
from app.domain.values import ZERO, ExitReason, OrderStatus, Side, TradeStatus
from app.venues.paper.exchange import MockBinanceService

START = datetime(2025, 9, 8, tzinfo=UTC)
SYMBOLS = ("BTCUSDT", "SOLUSDT")


class Crash(BaseException):
    """The process dies: nothing after this line runs."""


@dataclasses.dataclass
class Paper:
    container: Container
    clock: SimulatedClock
    user_id: int
    settings: Settings

    async def exchange(self) -> MockBinanceService:
        return await self.container.exchanges.for_user(self.user_id)  # type: ignore[no-any-return]

    async def cycle(self) -> None:
        self.clock.advance(timedelta(minutes=5))
        await self.container.bot.run_cycle(self.clock.now())

    async def until(self, done: Callable[[], Awaitable[bool]], cycles: int = 3000) -> None:
        for _ in range(cycles):
            if await done():
                return
            await self.cycle()
        raise AssertionError("the condition never came true")

    async def trades(self) -> list[TradeRecord]:
        async with self.container.uow() as uow:
            items, _ = await uow.trades.page(self.user_id, limit=500)
        return sorted(items, key=lambda t: t.id)

    async def has_position(self) -> bool:
        async with self.container.uow() as uow:
            return bool(await uow.positions.for_user(self.user_id))

    def restarted(self) -> Paper:
        return Paper(Container(self.settings, market_clock=self.clock), self.clock, self.user_id, self.settings)

    async def events(self, type_: str) -> list[dict[str, Any]]:
        async with self.container.uow() as uow:
            events = await uow.events.for_user(self.user_id, limit=1000)
        return [e.data for e in events if e.type == type_]


async def _paper(settings: Settings) -> Paper:
    clock = SimulatedClock(START)
    container = Container(settings, market_clock=clock)
    async with container.uow() as uow:
        user = await uow.users.add("trader", "trader@example.com", "hash", clock.now())
        config = dataclasses.replace(container.default_config(user.id), is_active=True, symbols=SYMBOLS)
        await uow.configs.create(config, clock.now())
        await uow.portfolios.create(user.id, settings.paper_start_balance, clock.now())
        await container.open_paper_account(uow, user.id)
        await uow.commit()
    return Paper(container, clock, user.id, settings)


async def assert_books_equal_the_exchange(paper: Paper) -> None:
    """The exchange's own view (its orders, lists and balances) against the books: every filled entry booked once,
    every open position protected by a live list or being closed, base and quote balances to the last digit."""
    exchange = await paper.exchange()
    orders = await exchange.list_orders()
    ids = [o.client_order_id for o in orders]
    assert len(ids) == len(set(ids)), "an order was sent twice"
    trades = await paper.trades()
    booked = {t.entry_client_order_id for t in trades}
    unbooked = [o.client_order_id for o in orders if o.side == Side.BUY and o.executed_qty > 0
                and o.client_order_id not in booked]
    assert not unbooked, f"filled entries without their trade: {unbooked}"
    open_lists = {o.list_client_order_id for o in await exchange.get_open_oco_orders()}
    async with paper.container.uow() as uow:
        positions = await uow.positions.for_user(paper.user_id)
        dust = {s: await uow.dust.get(paper.user_id, s) for s in SYMBOLS}
        exits = {t.id: await uow.orders.for_trade(t.id, "exit") for t in trades if t.status == TradeStatus.FILLED}
    for p in positions:
        assert getattr(p, "closing_reason", None) is not None or p.oco_order_id in open_lists, f"unprotected position {p}"
    balances = {b.asset: b.total for b in await exchange.get_balances()}
    for symbol in SYMBOLS:
        sold = sum((r.executed_qty for p in positions if p.symbol == symbol for r in exits[p.trade_id]), ZERO)
        held = sum((p.amount for p in positions if p.symbol == symbol), ZERO) - sold + dust[symbol].amount
        assert balances.get(symbol.removesuffix("USDT"), ZERO) == held, f"{symbol}: exchange and books differ"
    proceeds = sum((r.cumulative_quote_qty - r.commission for rows in exits.values() for r in rows), ZERO)
    open_cost = sum((t.amount * t.price for t in trades if t.status == TradeStatus.FILLED), ZERO)
    realised = sum((t.profit_loss or ZERO for t in trades if t.status == TradeStatus.CLOSED), ZERO)
    carried = sum((r.cost for r in dust.values()), ZERO)
    assert balances["USDT"] + carried == paper.settings.paper_start_balance + realised - open_cost + proceeds


# 1 -----------------------------------------------------------------------------------------------------------------
async def test_an_entry_whose_booking_failed_is_booked_and_protected_by_the_next_cycle(settings: Settings) -> None:
    """A 503 on the balance read between the entry's fill and its booking used to leave a filled BUY outside the
    books forever, and the bot bought the symbol again."""
    paper = await _paper(settings)
    exchange = await paper.exchange()
    real_order, real_balance = exchange.place_market_order, exchange.get_account_balance
    failing = {"armed": False, "hits": 0}

    async def entry(symbol: str, side: Side, quantity: Decimal, client_id: str) -> Any:
        order = await real_order(symbol, side, quantity, client_id)
        failing["armed"] = side == Side.BUY and failing["hits"] == 0
        return order

    async def balance(asset: str = "USDT") -> Any:
        if failing["armed"]:
            failing["armed"], failing["hits"] = False, 1
            raise TemporaryExchangeError("Binance GET /api/v3/account: HTTP 503")
        return await real_balance(asset)

    exchange.place_market_order = entry  # type: ignore[method-assign]
    exchange.get_account_balance = balance  # type: ignore[method-assign]
    await paper.until(lambda: _true(failing["hits"] == 1))
    assert not await paper.trades(), "the booking failed: no trade yet"
    for _ in range(12 * 12):
        await paper.cycle()
        await assert_books_equal_the_exchange(paper)
    trades = await paper.trades()
    assert trades and trades[0].entry_client_order_id.startswith(f"trd{paper.user_id}-")
    assert any(e["action"] == "adopted entry found filled" for e in await paper.events("reconciled"))
    await paper.container.db.dispose()


async def _true(value: bool) -> bool:
    return value


# 2 -----------------------------------------------------------------------------------------------------------------
async def _open_trade(settings: Settings) -> tuple[Paper, TradeRecord]:
    paper = await _paper(settings)
    await paper.until(paper.has_position)
    trade = next(t for t in await paper.trades() if t.status == TradeStatus.FILLED)
    return paper, trade


def _partial_sells(exchange: MockBinanceService, ratios: list[Decimal]) -> None:
    """The next SELLs at market fill only these shares of their quantity (the book runs dry; the order EXPIRES)."""
    real = exchange.place_market_order

    async def sell(symbol: str, side: Side, quantity: Decimal, client_id: str) -> Any:
        if side == Side.SELL and ratios:
            return await real(symbol, side, quantity, client_id, available_qty=quantity * ratios.pop(0))
        return await real(symbol, side, quantity, client_id)

    exchange.place_market_order = sell  # type: ignore[method-assign]


async def test_a_partly_filled_exit_sells_the_rest_before_the_trade_is_closed(settings: Settings) -> None:
    paper, trade = await _open_trade(settings)
    _partial_sells(await paper.exchange(), [Decimal("0.5")])
    closed = await paper.container.bot.close_trade(paper.user_id, trade.id, ExitReason.MANUAL)
    assert closed.status == TradeStatus.CLOSED and closed.exit_reason == ExitReason.MANUAL
    async with paper.container.uow() as uow:
        exits = await uow.orders.for_trade(trade.id, "exit")
    assert [r.status for r in exits] == [OrderStatus.EXPIRED.value, OrderStatus.FILLED.value]
    await assert_books_equal_the_exchange(paper)
    assert any(e["action"] == "sold remainder of partial exit" for e in await paper.events("reconciled"))
    await paper.container.db.dispose()


async def test_an_exit_that_cannot_finish_now_stays_open_until_the_coins_are_sold(settings: Settings) -> None:
    paper, trade = await _open_trade(settings)
    exchange = await paper.exchange()
    _partial_sells(exchange, [Decimal("0.5")])
    real = exchange.place_market_order
    refusals = {"left": 3}

    async def refuse_the_rest(symbol: str, side: Side, quantity: Decimal, client_id: str) -> Any:
        if client_id.endswith("-x2") and refusals["left"]:
            refusals["left"] -= 1
            raise TemporaryExchangeError("Binance POST /api/v3/order: connection refused (not sent)")
        return await real(symbol, side, quantity, client_id)

    exchange.place_market_order = refuse_the_rest  # type: ignore[method-assign]
    with pytest.raises(RuleViolation, match="being closed"):
        await paper.container.bot.close_trade(paper.user_id, trade.id, ExitReason.MANUAL)
    still = next(t for t in await paper.trades() if t.id == trade.id)
    assert still.status == TradeStatus.FILLED, "never closed while the exchange holds its coins"
    async with paper.container.uow() as uow:
        position = await uow.positions.get(trade.id)
    assert position is not None and position.closing_reason == ExitReason.MANUAL and position.oco_order_id is None
    await assert_books_equal_the_exchange(paper)
    refusals["left"] = 0
    await paper.cycle()
    closed = next(t for t in await paper.trades() if t.id == trade.id)
    assert closed.status == TradeStatus.CLOSED and closed.exit_reason == ExitReason.MANUAL
    await assert_books_equal_the_exchange(paper)
    await paper.container.db.dispose()


# 3, 7 --------------------------------------------------------------------------------------------------------------
async def _crash_after_placing_protection(settings: Settings) -> Paper:
    paper = await _paper(settings)
    exchange = await paper.exchange()
    real = exchange.place_oco_order

    async def placed_then_died(*args: Any) -> Any:
        await real(*args)
        raise Crash

    exchange.place_oco_order = placed_then_died  # type: ignore[method-assign]
    with pytest.raises(Crash):
        await paper.until(lambda: _true(False))
    await paper.container.db.dispose()
    return paper.restarted()


async def test_a_restart_links_the_live_list_and_its_row_says_so(settings: Settings) -> None:
    restarted = await _crash_after_placing_protection(settings)
    await restarted.cycle()
    async with restarted.container.uow() as uow:
        (position,) = await uow.positions.for_user(restarted.user_id)
        rows = await uow.orders.for_trade(position.trade_id, "protect")
    assert [(r.client_order_id, r.status) for r in rows] == [(position.oco_order_id, "EXECUTING")]
    assert any(e["action"] == "re-protected" for e in await restarted.events("reconciled"))
    await assert_books_equal_the_exchange(restarted)
    await restarted.container.db.dispose()


async def test_a_temporary_error_while_re_protecting_is_not_taken_for_a_missing_list(settings: Settings) -> None:
    restarted = await _crash_after_placing_protection(settings)
    exchange = await restarted.exchange()
    real = exchange.get_oco_order_status
    failures = {"left": 1}

    async def unavailable(symbol: str, list_id: str) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise TemporaryExchangeError("Binance GET /api/v3/orderList: HTTP 503")
        return await real(symbol, list_id)

    exchange.get_oco_order_status = unavailable  # type: ignore[method-assign]
    placed = exchange.place_oco_order
    calls: list[str] = []

    async def counted(*args: Any) -> Any:
        calls.append(str(args[-1]))
        return await placed(*args)

    exchange.place_oco_order = counted  # type: ignore[method-assign]
    await restarted.cycle()
    await restarted.cycle()
    assert calls == [], "no second list is placed while the first one is live"
    async with restarted.container.uow() as uow:
        (position,) = await uow.positions.for_user(restarted.user_id)
    assert position.oco_order_id is not None and position.oco_order_id.endswith("-p1")
    assert not [t for t in await restarted.trades() if t.exit_reason == ExitReason.EMERGENCY]
    await assert_books_equal_the_exchange(restarted)
    await restarted.container.db.dispose()


# 4 -----------------------------------------------------------------------------------------------------------------
async def test_a_rate_limit_on_the_oco_is_waited_out_within_the_cycle(settings: Settings) -> None:
    paper = await _paper(settings)
    exchange = await paper.exchange()
    real = exchange.place_oco_order
    banned_until: dict[str, datetime] = {}

    async def limited(*args: Any) -> Any:
        now = paper.clock.now()
        if "until" not in banned_until:
            banned_until["until"] = now + timedelta(seconds=30)
        if now < banned_until["until"]:
            left = (banned_until["until"] - now).total_seconds()
            raise RateLimited(f"Binance: POST /api/v3/orderList/oco not sent: rate limited for {left:.0f} s more", left)
        return await real(*args)

    exchange.place_oco_order = limited  # type: ignore[method-assign]
    await paper.until(paper.has_position)
    async with paper.container.uow() as uow:
        (position,) = await uow.positions.for_user(paper.user_id)
    assert position.oco_order_id is not None, "protected in the cycle of its entry"
    assert not [t for t in await paper.trades() if t.exit_reason == ExitReason.EMERGENCY]
    await assert_books_equal_the_exchange(paper)
    await paper.container.db.dispose()


# 5 -----------------------------------------------------------------------------------------------------------------
async def test_a_list_the_exchange_forgot_is_replaced(settings: Settings) -> None:
    paper, trade = await _open_trade(settings)
    exchange = await paper.exchange()
    async with paper.container.uow() as uow:
        gone = (await uow.positions.get(trade.id)).oco_order_id
    assert gone is not None
    await exchange.cancel_oco_order(trade.symbol, gone)  # the venue took it down...
    real = exchange.get_oco_order_status

    async def forgotten(symbol: str, list_id: str) -> Any:
        if list_id == gone:  # ...and no longer knows it
            raise OrderNotFound(f"Order list does not exist. ({symbol} {list_id})", -2013)
        return await real(symbol, list_id)

    exchange.get_oco_order_status = forgotten  # type: ignore[method-assign]
    await paper.cycle()
    async with paper.container.uow() as uow:
        position = await uow.positions.get(trade.id)
        row = await uow.orders.get(gone)
    open_lists = {o.list_client_order_id for o in await exchange.get_open_oco_orders()}
    assert position is not None and position.oco_order_id in open_lists and position.oco_order_id != gone
    assert row is not None and row.status == "ALL_DONE"
    await assert_books_equal_the_exchange(paper)
    await paper.container.db.dispose()


# 6 -----------------------------------------------------------------------------------------------------------------
def _exchange_clock_behind(exchange: MockBinanceService, by: timedelta) -> None:
    """The venue stamps its answers with its own clock, a year behind the bot's."""
    for name in ("place_market_order", "get_order"):
        real = getattr(exchange, name)

        async def stamped(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
            order = await _real(*args, **kwargs)
            return dataclasses.replace(order, transact_time=order.transact_time - by) if order.transact_time else order

        setattr(exchange, name, stamped)


async def test_durations_are_measured_on_the_bots_clock(settings: Settings) -> None:
    paper, trade = await _open_trade(settings)
    _exchange_clock_behind(await paper.exchange(), timedelta(days=365))
    paper.clock.advance(timedelta(minutes=39))
    closed = await paper.container.bot.close_trade(paper.user_id, trade.id, ExitReason.MANUAL)
    assert closed.closed_at == paper.clock.now()
    assert closed.duration_seconds == int((paper.clock.now() - trade.executed_at).total_seconds()) >= 39 * 60
    await paper.container.db.dispose()


async def test_an_entry_adopted_after_a_restart_keeps_the_bots_time(settings: Settings) -> None:
    paper = await _paper(settings)
    exchange = await paper.exchange()
    real = exchange.place_market_order

    async def filled_then_died(*args: Any) -> Any:
        await real(*args)
        raise Crash

    exchange.place_market_order = filled_then_died  # type: ignore[method-assign]
    with pytest.raises(Crash):
        await paper.until(lambda: _true(False))
    sent_at = paper.clock.now()
    await paper.container.db.dispose()
    restarted = paper.restarted()
    _exchange_clock_behind(await restarted.exchange(), timedelta(days=365))
    await restarted.cycle()
    trade = (await restarted.trades())[0]
    assert trade.executed_at == sent_at and trade.status == TradeStatus.FILLED, "not timed out on the venue's clock"
    await assert_books_equal_the_exchange(restarted)
    await restarted.container.db.dispose()


async def test_an_exit_lost_before_it_reached_the_exchange_is_sent_again_under_a_new_client_id(
    settings: Settings,
) -> None:
    """Found by the chaos soak: the retry reused the lost order's client id (its row was not counted) and the
    books refused the duplicate, which stopped every cycle."""
    paper, trade = await _open_trade(settings)
    exchange = await paper.exchange()
    real = exchange.place_market_order
    lost = {"left": 1}

    async def lost_on_the_way(symbol: str, side: Side, quantity: Decimal, client_id: str) -> Any:
        if side == Side.SELL and lost["left"]:
            lost["left"] -= 1
            raise OrderStatusUnknown(f"Binance POST /api/v3/order {client_id}: no answer (timeout)")
        return await real(symbol, side, quantity, client_id)

    exchange.place_market_order = lost_on_the_way  # type: ignore[method-assign]
    closed = await paper.container.bot.close_trade(paper.user_id, trade.id, ExitReason.MANUAL)
    assert closed.status == TradeStatus.CLOSED
    async with paper.container.uow() as uow:
        exits = await uow.orders.for_trade(trade.id, "exit")
    assert [(r.client_order_id.rsplit("-", 1)[1], r.status) for r in exits] == [("x1", "NOT_FOUND"), ("x2", "FILLED")]
    await assert_books_equal_the_exchange(paper)
    await paper.container.db.dispose()


async def test_a_list_the_exchange_wrongly_denies_is_not_replaced_while_its_legs_are_live(settings: Settings) -> None:
    """Found by the chaos soak: a -2013 for a list that was live made the bot give it up; its take-profit later
    filled while the books held the trade open, for good."""
    restarted = await _crash_after_placing_protection(settings)
    exchange = await restarted.exchange()
    real = exchange.get_oco_order_status
    denials = {"left": 1}

    async def denied_once(symbol: str, list_id: str) -> Any:
        if denials["left"]:
            denials["left"] -= 1
            raise OrderNotFound(f"Order list does not exist. ({symbol} {list_id})", -2013)
        return await real(symbol, list_id)

    exchange.get_oco_order_status = denied_once  # type: ignore[method-assign]
    placed = exchange.place_oco_order
    calls: list[str] = []

    async def counted(*args: Any) -> Any:
        calls.append(str(args[-1]))
        return await placed(*args)

    exchange.place_oco_order = counted  # type: ignore[method-assign]
    await restarted.cycle()
    await restarted.cycle()
    assert calls == [], "no second list while the first one's legs are live"
    async with restarted.container.uow() as uow:
        (position,) = await uow.positions.for_user(restarted.user_id)
    assert position.oco_order_id is not None and position.oco_order_id.endswith("-p1")
    await assert_books_equal_the_exchange(restarted)
    await restarted.container.db.dispose()


async def test_coins_locked_in_a_list_denied_twice_are_freed_before_the_position_is_sold(settings: Settings) -> None:
    """Found by the chaos soak: the list and its legs were both denied (-2013) while the list lived; the bot
    called it gone, could not re-protect (the coins were locked in it) and then tried to sell them forever."""
    paper, trade = await _open_trade(settings)
    exchange = await paper.exchange()
    async with paper.container.uow() as uow:
        live = (await uow.positions.get(trade.id)).oco_order_id
    assert live is not None
    real_list, real_order = exchange.get_oco_order_status, exchange.get_order
    denied = {live, f"{live}-tp", f"{live}-sl"}

    async def list_denied_once(symbol: str, list_id: str) -> Any:
        if list_id in denied:
            denied.discard(list_id)
            raise OrderNotFound(f"Order list does not exist. ({symbol} {list_id})", -2013)
        return await real_list(symbol, list_id)

    async def leg_denied_once(symbol: str, client_id: str) -> Any:
        if client_id in denied:
            denied.discard(client_id)
            raise OrderNotFound(f"Order does not exist. ({symbol} {client_id})", -2013)
        return await real_order(symbol, client_id)

    exchange.get_oco_order_status = list_denied_once  # type: ignore[method-assign]
    exchange.get_order = leg_denied_once  # type: ignore[method-assign]
    await paper.cycle()
    closed = next(t for t in await paper.trades() if t.id == trade.id)
    assert closed.status == TradeStatus.CLOSED and closed.exit_reason == ExitReason.EMERGENCY
    assert live not in {o.list_client_order_id for o in await exchange.get_open_oco_orders()}
    await assert_books_equal_the_exchange(paper)
    await paper.container.db.dispose()


async def test_an_exit_that_sold_but_was_denied_once_is_booked_when_the_exchange_owns_up(settings: Settings) -> None:
    """Found by the chaos soak: a sell whose answer was lost and whose lookup was then denied (-2013) was taken
    for one that never arrived; the coins were gone and the bot tried to sell them forever."""
    paper, trade = await _open_trade(settings)
    exchange = await paper.exchange()
    real_order, real_get = exchange.place_market_order, exchange.get_order
    lost: set[str] = set()

    async def sold_answer_lost(symbol: str, side: Side, quantity: Decimal, client_id: str) -> Any:
        order = await real_order(symbol, side, quantity, client_id)
        if side == Side.SELL and not lost:
            lost.add(client_id)
            raise OrderStatusUnknown(f"Binance POST /api/v3/order {client_id}: no answer (timeout)")
        return order

    async def denied_once(symbol: str, client_id: str) -> Any:
        if client_id in lost:
            lost.discard(client_id)
            lost.add("done")
            raise OrderNotFound(f"Order does not exist. ({symbol} {client_id})", -2013)
        return await real_get(symbol, client_id)

    exchange.place_market_order = sold_answer_lost  # type: ignore[method-assign]
    exchange.get_order = denied_once  # type: ignore[method-assign]
    with pytest.raises(RuleViolation, match="being closed"):
        await paper.container.bot.close_trade(paper.user_id, trade.id, ExitReason.MANUAL)
    await paper.cycle()
    closed = next(t for t in await paper.trades() if t.id == trade.id)
    assert closed.status == TradeStatus.CLOSED and closed.exit_reason == ExitReason.MANUAL
    await assert_books_equal_the_exchange(paper)
    await paper.container.db.dispose()


async def test_a_symbol_whose_entry_the_exchange_denies_is_not_bought_again_until_it_is_settled(
    settings: Settings,
) -> None:
    """Found by the chaos soak: while a filled entry was denied, the user bought the symbol again, and booking the
    first one later collided with the second position and stopped every cycle."""
    paper = await _paper(settings)
    exchange = await paper.exchange()
    real_order, real_get = exchange.place_market_order, exchange.get_order
    denied: dict[str, int] = {}

    async def bought_answer_lost(symbol: str, side: Side, quantity: Decimal, client_id: str) -> Any:
        order = await real_order(symbol, side, quantity, client_id)
        if side == Side.BUY and not denied:
            denied[client_id] = 3  # the lookup right away, then two cycles' reconciliation
            raise OrderStatusUnknown(f"Binance POST /api/v3/order {client_id}: no answer (timeout)")
        return order

    async def denied_for_a_while(symbol: str, client_id: str) -> Any:
        if denied.get(client_id):
            denied[client_id] -= 1
            raise OrderNotFound(f"Order does not exist. ({symbol} {client_id})", -2013)
        return await real_get(symbol, client_id)

    exchange.place_market_order = bought_answer_lost  # type: ignore[method-assign]
    exchange.get_order = denied_for_a_while  # type: ignore[method-assign]
    await paper.until(lambda: _true(bool(denied)))
    (first,) = denied
    symbol = first.split("-")[1]
    for _ in range(12):
        await paper.cycle()
    buys = [o for o in await exchange.list_orders() if o.side == Side.BUY and o.symbol == symbol]
    booked = [t for t in await paper.trades() if t.entry_client_order_id == first]
    assert booked, "the denied entry is booked once the exchange owns up"
    async with paper.container.uow() as uow:
        events = await uow.events.for_user(paper.user_id, limit=1000)
    adopted_at = next(e.time for e in events if e.type == "reconciled" and e.data["action"] == "adopted entry found filled")
    again = [o.client_order_id for o in buys if o.client_order_id != first and o.transact_time < adopted_at]
    assert not again, f"{symbol} bought again while its first entry was denied: {again}"
    await assert_books_equal_the_exchange(paper)
    await paper.container.db.dispose()
