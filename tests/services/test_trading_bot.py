"""The engine over real candles on the simulated clock: invariants, determinism, and recovery after a crash."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from app.config import Settings
from app.container import Container
from app.domain.clock import SimulatedClock
from app.domain.errors import ConfigurationError, RuleViolation
from app.domain.records import TradeRecord
from app.domain.values import ZERO, ExitReason, TradeStatus, TradingState
from app.engine.analysis import _confluence_score
from tests.books import carried_cost

START = datetime(2025, 9, 8, tzinfo=UTC)
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")


async def _engine(
    settings: Settings, users: int = 2, symbols: tuple[str, ...] = SYMBOLS
) -> tuple[Container, SimulatedClock, list[int]]:
    clock = SimulatedClock(START)
    container = Container(settings, market_clock=clock)
    ids = []
    async with container.uow() as uow:
        for n in range(users):
            user = await uow.users.add(f"user{n}", f"user{n}@example.com", "hash", clock.now())
            config = dataclasses.replace(container.default_config(user.id), is_active=True, symbols=symbols)
            await uow.configs.create(config, clock.now())
            await uow.portfolios.create(user.id, settings.paper_start_balance, clock.now())
            await container.open_paper_account(uow, user.id)
            ids.append(user.id)
        await uow.commit()
    return container, clock, ids


async def _trades(container: Container, user_id: int) -> list[TradeRecord]:
    async with container.uow() as uow:
        items, _ = await uow.trades.page(user_id, limit=500)
    return sorted(items, key=lambda t: t.id)


async def _assert_positions_sane(container: Container, user_id: int) -> None:
    async with container.uow() as uow:
        positions = await uow.positions.for_user(user_id)
    assert len(positions) <= 3
    assert len({p.symbol for p in positions}) == len(positions)
    for p in positions:
        assert p.oco_order_id is not None, f"unprotected position {p}"
        assert p.stop_loss < p.entry_price < p.take_profit


def _assert_trade_within_rules(trade: TradeRecord, limits: Settings) -> None:
    tick = Decimal("0.01")
    risk, reward = trade.price - trade.stop_loss, trade.take_profit - trade.price
    assert reward >= (risk - tick) * limits.min_risk_reward - tick, trade
    stop_pct = risk * 100 / trade.price
    target_pct = reward * 100 / trade.price
    slack = tick * 100 / trade.price
    assert limits.min_stop_distance_pct - slack <= stop_pct <= limits.max_stop_distance_pct + slack, trade
    assert limits.min_target_distance_pct - slack <= target_pct <= limits.max_target_distance_pct + slack, trade
    cap = limits.paper_start_balance * 2 * limits.max_balance_trade_ratio
    assert trade.amount * trade.price <= cap, trade


@pytest.mark.slow
@pytest.mark.one_engine
async def test_two_users_one_week_keep_every_invariant(settings: Settings) -> None:
    # the threshold's jitter is drawn per user (and it binds: the rule-based confidence spans 50-95), so two users
    # with one config trade alike only without it
    settings = settings.model_copy(update={"randomize_thresholds": False})
    container, clock, users = await _engine(settings, symbols=("BTCUSDT", "SOLUSDT"))
    end = START + timedelta(days=7)
    while clock.now() < end:
        clock.advance(timedelta(minutes=5))
        await container.bot.run_cycle(clock.now())
        for user_id in users:
            await _assert_positions_sane(container, user_id)
    for user_id in users:
        trades = await _trades(container, user_id)
        assert len(trades) >= 5, "the engine should trade on a week of real candles"
        per_day = Counter(t.executed_at.date() for t in trades)
        assert max(per_day.values()) <= settings.daily_trade_limit
        for trade in trades:
            _assert_trade_within_rules(trade, settings)
        closed = [t for t in trades if t.status == TradeStatus.CLOSED]
        assert {t.exit_reason for t in closed} <= set(ExitReason)
        assert all(t.profit_loss is not None and t.duration_seconds is not None for t in closed)
        open_cost = sum((t.amount * t.price for t in trades if t.status == TradeStatus.FILLED), ZERO)
        realised = sum((t.profit_loss or ZERO for t in closed), ZERO)
        exchange = await container.exchanges.for_user(user_id)
        usdt = await exchange.get_account_balance("USDT")
        carried = await carried_cost(container.uow, user_id, {t.symbol for t in trades})
        assert usdt.total + carried == settings.paper_start_balance + realised - open_cost
        async with container.uow() as uow:
            stats = await uow.portfolios.get(user_id)
            held = {p.symbol for p in await uow.positions.for_user(user_id)}
        assert stats.total_trades == len(closed) and stats.total_realized_pnl == realised
        for symbol in {t.symbol for t in trades} - held:  # rounding dust is carried into later exits, not left
            rules = await exchange.get_symbol_rules(symbol)
            assert (await exchange.get_account_balance(rules.base_asset)).total < rules.step_size
    first, second = await _trades(container, users[0]), await _trades(container, users[1])
    assert [(t.symbol, t.price, t.exit_price) for t in first] == [(t.symbol, t.price, t.exit_price) for t in second]
    await container.db.dispose()


async def _run_days(settings: Settings, days: int) -> list[tuple[object, ...]]:
    container, clock, users = await _engine(settings, users=1)
    end = START + timedelta(days=days)
    while clock.now() < end:
        clock.advance(timedelta(minutes=5))
        await container.bot.run_cycle(clock.now())
    trades = await _trades(container, users[0])
    await container.db.dispose()
    return [(t.symbol, t.executed_at, t.amount, t.price, t.exit_reason, t.exit_price, t.profit_loss) for t in trades]


@pytest.mark.one_engine
async def test_same_inputs_give_the_same_trades(settings: Settings, database_url: str) -> None:
    from tests.conftest import _delete_rows

    first = await _run_days(settings, 2)
    await _delete_rows(database_url)
    second = await _run_days(settings, 2)
    assert first and first == second


class Crash(BaseException):
    """The process dies: nothing after this line runs."""


async def test_crash_between_entry_and_oco_is_protected_on_restart(settings: Settings) -> None:
    container, clock, users = await _engine(settings, users=1)
    user_id = users[0]
    exchange = await container.exchanges.for_user(user_id)
    real_place_oco = exchange.place_oco_order

    async def die(*args: object, **kwargs: object) -> object:
        raise Crash

    exchange.place_oco_order = die  # type: ignore[method-assign]
    with pytest.raises(Crash):
        while True:
            clock.advance(timedelta(minutes=5))
            await container.bot.run_cycle(clock.now())
    async with container.uow() as uow:
        positions = await uow.positions.for_user(user_id)
    assert len(positions) == 1 and positions[0].oco_order_id is None
    exchange.place_oco_order = real_place_oco  # type: ignore[method-assign]

    restarted = Container(settings, market_clock=clock)
    clock.advance(timedelta(minutes=5))
    await restarted.bot.run_cycle(clock.now())
    async with restarted.uow() as uow:
        position = (await uow.positions.for_user(user_id))[0]
    assert position.oco_order_id is not None
    oco = await (await restarted.exchanges.for_user(user_id)).get_oco_order_status(position.symbol, position.oco_order_id)
    assert oco.is_open and oco.stop_loss_leg.orig_qty == position.amount
    await container.db.dispose()
    await restarted.db.dispose()


async def test_manual_close_books_the_exit(settings: Settings) -> None:
    container, clock, users = await _engine(settings, users=1)
    while not (await _trades(container, users[0])):
        clock.advance(timedelta(minutes=5))
        await container.bot.run_cycle(clock.now())
    trade = (await _trades(container, users[0]))[0]
    async with container.uow() as uow:
        protection = (await uow.positions.get(trade.id)).oco_order_id
    closed = await container.bot.close_trade(users[0], trade.id, ExitReason.MANUAL)
    assert closed.status == TradeStatus.CLOSED and closed.exit_reason == ExitReason.MANUAL
    assert closed.fees > trade.entry_fee and closed.profit_loss is not None
    exchange = await container.exchanges.for_user(users[0])
    assert protection not in {o.list_client_order_id for o in await exchange.get_open_oco_orders()}
    async with container.uow() as uow:
        assert await uow.positions.get(trade.id) is None
    with pytest.raises(RuleViolation):
        await container.bot.close_trade(users[0], trade.id, ExitReason.MANUAL)
    await container.db.dispose()


async def _crash_at(settings: Settings, method: str, after_call: bool) -> tuple[Container, SimulatedClock, int]:
    """Runs cycles until the first call of `method`, then dies just before or just after it reaches the exchange."""
    container, clock, users = await _engine(settings, users=1)
    exchange = await container.exchanges.for_user(users[0])
    real = getattr(exchange, method)

    async def dying(*args: object, **kwargs: object) -> object:
        if after_call:
            await real(*args, **kwargs)
        raise Crash

    setattr(exchange, method, dying)
    with pytest.raises(Crash):
        while True:
            clock.advance(timedelta(minutes=5))
            await container.bot.run_cycle(clock.now())
    await container.db.dispose()
    return Container(settings, market_clock=clock), clock, users[0]


@pytest.mark.parametrize(
    ("method", "after_call"),
    [("place_market_order", False), ("place_market_order", True), ("place_oco_order", True)],
    ids=["before-entry-sent", "entry-filled-unrecorded", "oco-placed-unrecorded"],
)
async def test_killed_at_each_step_of_an_entry_recovers_on_restart(
    settings: Settings, method: str, after_call: bool
) -> None:
    restarted, clock, user_id = await _crash_at(settings, method, after_call)
    clock.advance(timedelta(minutes=5))
    await restarted.bot.run_cycle(clock.now())
    exchange = await restarted.exchanges.for_user(user_id)
    state = await exchange.state_snapshot()
    entries = [o for o in state["orders"] if o["type"] == "MARKET" and o["side"] == "BUY"]
    assert len({o["client_order_id"] for o in entries}) == len(entries), "an entry was sent twice"
    trades = await _trades(restarted, user_id)
    assert len(trades) == len(entries), "every filled entry is booked exactly once"
    async with restarted.uow() as uow:
        positions = await uow.positions.for_user(user_id)
    open_lists = {o.list_client_order_id for o in await exchange.get_open_oco_orders()}
    assert all(p.oco_order_id in open_lists for p in positions), "a position is without protection"
    assert len(open_lists) == len(positions), "an orphan protection list is left on the exchange"
    usdt = await exchange.get_account_balance("USDT")
    open_cost = sum((t.amount * t.price for t in trades if t.status == TradeStatus.FILLED), ZERO)
    realised = sum((t.profit_loss or ZERO for t in trades if t.status == TradeStatus.CLOSED), ZERO)
    carried = await carried_cost(restarted.uow, user_id, {t.symbol for t in trades})
    assert usdt.total + carried == settings.paper_start_balance + realised - open_cost
    await restarted.db.dispose()


async def test_exits_while_the_bot_was_down_are_booked_at_their_fill_time(settings: Settings) -> None:
    day = settings.model_copy(update={"position_timeout_minutes": 24 * 60})
    container, clock, users = await _engine(day, users=1)
    while not (await _trades(container, users[0])):
        clock.advance(timedelta(minutes=5))
        await container.bot.run_cycle(clock.now())
    clock.advance(timedelta(hours=23, minutes=55))  # down for almost the whole timeout: no cycles
    restart = clock.now()
    await container.bot.run_cycle(restart)
    closed = [t for t in await _trades(container, users[0]) if t.status == TradeStatus.CLOSED]
    assert closed, "on real candles at least one bracket finishes within a day"
    for trade in closed:
        assert trade.exit_reason in (ExitReason.TAKE_PROFIT, ExitReason.STOP_LOSS)
        assert trade.closed_at is not None and trade.closed_at < restart
    await container.db.dispose()


async def test_a_list_the_bot_did_not_place_is_adopted_and_reported(settings: Settings) -> None:
    container, clock, users = await _engine(settings, users=1)
    while not (await _trades(container, users[0])):
        clock.advance(timedelta(minutes=5))
        await container.bot.run_cycle(clock.now())
    exchange = await container.exchanges.for_user(users[0])
    await exchange.fund("BTC", Decimal("0.01"))
    price = await exchange.get_symbol_price("BTCUSDT")
    rules = await exchange.get_symbol_rules("BTCUSDT")
    await exchange.place_oco_order("BTCUSDT", Decimal("0.01"), rules.round_price_up(price * Decimal("1.1")),
                                   rules.round_price_down(price * Decimal("0.9")),
                                   rules.round_price_down(price * Decimal("0.89")), "by-hand-1")
    clock.advance(timedelta(minutes=5))
    await container.bot.run_cycle(clock.now())
    async with container.uow() as uow:
        adopted = await uow.orders.get("by-hand-1")
        events = await uow.events.for_user(users[0])
    assert adopted is not None and adopted.purpose == "adopted"
    assert any(e.type == "error" and "by-hand-1" in e.data["message"] for e in events)
    open_lists = {o.list_client_order_id for o in await exchange.get_open_oco_orders()}
    assert "by-hand-1" in open_lists
    await container.db.dispose()


async def test_halted_engine_opens_nothing_but_still_closes(settings: Settings) -> None:
    container, clock, users = await _engine(settings, users=1)
    while not (await _trades(container, users[0])):
        clock.advance(timedelta(minutes=5))
        await container.bot.run_cycle(clock.now())
    opened = len(await _trades(container, users[0]))
    container.bot.state = TradingState.HALTED
    for _ in range(12 * 9):  # nine hours: past the timeout of every open position
        clock.advance(timedelta(minutes=5))
        await container.bot.run_cycle(clock.now())
    trades = await _trades(container, users[0])
    assert len(trades) == opened
    assert all(t.status == TradeStatus.CLOSED for t in trades)
    metrics = container.metrics.render().decode()
    assert 'trdbot_orders_placed_total{outcome="FILLED",type="entry"}' in metrics
    assert "trdbot_signals_total{" in metrics
    await container.db.dispose()


class KeylessSecondUser:
    """An exchange provider where the second user has no usable keys (a live deployment's missing credentials)."""

    def __init__(self, inner, broken_user: int) -> None:  # type: ignore[no-untyped-def]
        self.inner, self.broken_user = inner, broken_user

    async def for_user(self, user_id: int):  # type: ignore[no-untyped-def]
        if user_id == self.broken_user:
            raise ConfigurationError(f"user {user_id} has no exchange keys")
        return await self.inner.for_user(user_id)


async def test_one_users_broken_exchange_does_not_stop_the_others(settings: Settings) -> None:
    container, clock, users = await _engine(settings)
    container.bot.exchanges = KeylessSecondUser(container.exchanges, users[1])
    for _ in range(12 * 6):
        clock.advance(timedelta(minutes=5))
        await container.bot.run_cycle(clock.now())
    assert await _trades(container, users[0])
    assert not await _trades(container, users[1])
    async with container.uow() as uow:
        events = await uow.events.for_user(users[1])
    assert any(e.type == "error" and "no exchange keys" in e.data["message"] for e in events)
    await container.db.dispose()


class PausingExchanges:
    """The exchange port, holding the engine's first order-list status query until the test releases it."""

    def __init__(self, inner: object) -> None:
        self.inner, self.paused, self.release = inner, asyncio.Event(), asyncio.Event()

    async def for_user(self, user_id: int) -> object:
        return PausingAdapter(await self.inner.for_user(user_id), self)  # type: ignore[attr-defined]


class PausingAdapter:
    def __init__(self, inner: object, control: PausingExchanges) -> None:
        self.inner, self.control = inner, control

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def get_oco_order_status(self, symbol: str, list_id: str) -> object:
        if not self.control.paused.is_set():
            self.control.paused.set()
            await self.control.release.wait()
        return await self.inner.get_oco_order_status(symbol, list_id)  # type: ignore[attr-defined]


async def test_a_manual_close_during_a_cycle_is_booked_once(settings: Settings) -> None:
    """The API's close and the engine's exit check share one event loop: the engine looks at the position's order
    list while the user closes it. The close must be booked once, as MANUAL, not again as an EMERGENCY exit."""
    container, clock, users = await _engine(settings, users=1)
    while not (await _trades(container, users[0])):
        clock.advance(timedelta(minutes=5))
        await container.bot.run_cycle(clock.now())
    trade = (await _trades(container, users[0]))[0]
    exchanges = PausingExchanges(container.bot.exchanges)
    container.bot.exchanges = exchanges  # type: ignore[assignment]
    clock.advance(timedelta(minutes=5))
    cycle = asyncio.create_task(container.bot.run_cycle(clock.now()))
    await exchanges.paused.wait()  # the engine has read the open position and asks for its order list
    close = asyncio.create_task(container.bot.close_trade(users[0], trade.id, ExitReason.MANUAL))
    await asyncio.sleep(0.3)  # room for the close to run to its end if nothing holds it back
    exchanges.release.set()
    await asyncio.gather(cycle, close)
    booked = next(t for t in await _trades(container, users[0]) if t.id == trade.id)
    assert booked.exit_reason == ExitReason.MANUAL
    async with container.uow() as uow:
        stats = await uow.portfolios.get(users[0])
    closed = [t for t in await _trades(container, users[0]) if t.status == TradeStatus.CLOSED]
    assert stats.total_trades == len(closed)
    assert stats.total_realized_pnl == sum((t.profit_loss or ZERO for t in closed), ZERO)
    await container.db.dispose()


def test_the_decision_logs_confluence_is_the_rounded_text_whatever_came_before() -> None:
    """Two decimals of the score as text; a zero keeps its own sign."""
    for confluence in (0.0, -0.0, 0.0, 54.449999, 54.45, -0.0):
        assert str(_confluence_score(confluence)) == str(Decimal(str(round(confluence, 2))))
