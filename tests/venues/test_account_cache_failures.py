"""A paper account kept in memory never drifts from the stored one: after every call, one that filled, one the
exchange refused, or one that failed half-way, the copy the cache hands back is the account a fresh process reads,
and the exchange answers as one on a store that reads every call afresh."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.clock import SimulatedClock, ms_from_utc
from app.domain.errors import ConfigurationError, InsufficientFunds, OrderNotFound, OrderRejected, TradingError
from app.domain.values import ZERO, Side
from app.marketdata.candle_files import HEADER
from app.marketdata.candles import CandleStore
from app.venues.paper.account_cache import CachedSimAccountStore
from app.venues.paper.accounts import SimAccountState
from app.venues.paper.exchange import MockBinanceService
from app.venues.paper.market import SimulatedMarket
from app.venues.paper.matcher import Matcher
from tests.bundled import store_bundled_rules
from tests.venues.test_account_cache import CountingAccounts

T0 = datetime(2025, 1, 1, tzinfo=UTC)
ACCOUNT = "paper-1"
FLAT, HIGH, LOW = ("100", "100.5", "99.5", "100"), ("108", "108.5", "107.5", "108"), ("92", "92.5", "91.5", "92")
# BTCUSDT 5m candles from T0: quiet at 100, a spike through 110 (take-profits fill), quiet at 108, a drop through 95
# (stops trigger, limits at 94 fill), quiet at 92, a climb back, quiet at 99
CANDLES = [FLAT] * 12 + [("100", "111", "99.5", "108")] + [HIGH] * 5 + [("108", "108", "90", "92")] + [LOW] * 5 \
    + [("92", "100", "91", "99")] + [("99", "99.5", "98.5", "99")] * 15
LAST_MINUTE = 5 * len(CANDLES) - 5  # the clock stays where the candles still give a last price


def minutes(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


def write_candles(directory: Path) -> CandleStore:
    start = ms_from_utc(T0)
    rows = [f"{start + i * 300_000},{o},{h},{lo},{c},1" for i, (o, h, lo, c) in enumerate(CANDLES)]
    (directory / "binance_BTCUSDT_5m.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    store_bundled_rules(directory)  # BTCUSDT: step 0.00001, min notional 5, tick 0.01
    return CandleStore.load(directory)


class FreshReads:
    """A store that keeps nothing: each load is the stored row read afresh, as a new process reads it. It never
    saves: a call through it that found something to save would be a change the caching process did not store."""

    def __init__(self, accounts: CountingAccounts) -> None:
        self._accounts = accounts

    async def load(self, account_id: str) -> SimAccountState | None:
        found = self._accounts.rows.get(account_id)
        return None if found is None else SimAccountState.from_dict(found[1])

    async def save(self, account_id: str, state: SimAccountState) -> None:
        raise AssertionError(f"a fresh read of {account_id} found a change the cached one never saved")

    def forget(self, account_id: str) -> None:
        """Nothing kept, nothing to drop."""


@dataclass
class World:
    """One account served twice over the same rows: by the engine's way (a cache) and by a process just started."""

    clock: SimulatedClock
    market: SimulatedMarket
    accounts: CountingAccounts
    store: CachedSimAccountStore
    cached: MockBinanceService
    fresh: MockBinanceService

    @classmethod
    async def open(cls, candles: CandleStore, at: datetime) -> World:
        clock, market, accounts = SimulatedClock(at), SimulatedMarket(candles), CountingAccounts()
        store = CachedSimAccountStore(accounts)
        funds = {"USDT": D("1000"), "BTC": D("2")}
        cached = await MockBinanceService.open_account(ACCOUNT, market, store, clock, funds)
        fresh = MockBinanceService(ACCOUNT, market, FreshReads(accounts), clock)
        return cls(clock, market, accounts, store, cached, fresh)

    def caught_up(self, data: dict[str, Any]) -> dict[str, Any]:
        """An account's dict form once its resting orders are matched up to now. A call that changes nothing saves
        nothing, by design, not even how far its catch-up got (a fresh read redoes that walk and finds nothing new),
        so a kept copy and its stored row agree once both are caught up to the same time."""
        state = SimAccountState.from_dict(data)
        Matcher(self.market).catch_up(state, ms_from_utc(self.clock.now()))
        return state.to_dict()

    async def assert_agree(self, after: str) -> None:
        kept = await self.store.load(ACCOUNT)
        assert kept is not None
        assert self.caught_up(kept.to_dict()) == self.caught_up(self.accounts.rows[ACCOUNT][1]), after
        for ask in (MockBinanceService.get_balances, MockBinanceService.list_orders,
                    MockBinanceService.list_order_lists, MockBinanceService.get_open_oco_orders):
            assert await ask(self.cached) == await ask(self.fresh), f"{after}: {ask.__name__}"


def spend_then_fail(state: SimAccountState, _now_ms: int) -> None:
    """An action that changes the account without counting a revision, then fails. No order entry does this (each
    checks everything before it changes anything), but the revision is all `_attempt` sees of what an action did."""
    free, locked = state.balances.get("USDT", (ZERO, ZERO))
    state.balances["USDT"] = (free - 1, locked)
    raise OrderRejected("failed half-way", -1013)


Call = Callable[[MockBinanceService], Awaitable[object]]


def oco(qty: str, take_profit: str, stop: str, list_id: str) -> Call:
    return lambda s: s.place_oco_order("BTCUSDT", D(qty), D(take_profit), D(stop), D(stop) - 1, list_id)


def market_order(side: Side, qty: str, client_id: str, symbol: str = "BTCUSDT") -> Call:
    return lambda s: s.place_market_order(symbol, side, D(qty), client_id)


# (minute, what is asked, the error it fails with or None)
SCRIPT: list[tuple[int, str, Call, type[Exception] | None]] = [
    (10, "fund", lambda s: s.fund("USDT", D("500")), None),
    (10, "buy beyond the balance", market_order(Side.BUY, "20", "b1"), InsufficientFunds),
    (10, "buy below the min notional", market_order(Side.BUY, "0.01", "b1"), OrderRejected),
    (10, "buy off the quantity step", market_order(Side.BUY, "0.123456", "b1"), OrderRejected),
    (10, "buy an unknown symbol", market_order(Side.BUY, "1", "b1", symbol="NOPEUSDT"), ConfigurationError),
    (10, "buy", market_order(Side.BUY, "3", "b1"), None),
    (10, "sell more than held", market_order(Side.SELL, "5", "s1"), InsufficientFunds),
    (10, "withdraw more than held", lambda s: s.fund("USDT", D("-5000")), InsufficientFunds),
    (10, "OCO with the take-profit below the price", oco("1", "90", "95", "L1"), OrderRejected),
    (10, "OCO with the stop above the price", oco("1", "110", "101", "L1"), OrderRejected),
    (10, "OCO of more than held", oco("5", "110", "95", "L1"), InsufficientFunds),
    (10, "OCO", oco("1", "110", "95", "L1"), None),
    (10, "OCO under a list id still open", oco("1", "110", "95", "L1"), OrderRejected),
    (10, "cancel an unknown order", lambda s: s.cancel_order("BTCUSDT", "nope"), OrderNotFound),
    (10, "cancel an unknown list", lambda s: s.cancel_oco_order("BTCUSDT", "nope"), OrderNotFound),
    (10, "a change not counted, then a failure", lambda s: s._transact(spend_then_fail), OrderRejected),
    (30, "a quiet read later", lambda s: s.get_balances(), None),
    (30, "a change not counted, then a failure, later", lambda s: s._transact(spend_then_fail), OrderRejected),
    (30, "cancel the OCO", lambda s: s.cancel_oco_order("BTCUSDT", "L1"), None),
    (30, "cancel it again", lambda s: s.cancel_oco_order("BTCUSDT", "L1"), OrderNotFound),
    (30, "OCO", oco("1", "110", "95", "L2"), None),
    (40, "OCO under the id of one still open", oco("0.5", "120", "95", "L2"), OrderRejected),
    (40, "OCO that the drop will stop out", oco("0.5", "120", "95", "L3"), None),
    (70, "a read after the take-profit filled", lambda s: s.get_balances(), None),
    # the catch-up fills L3's stop on the drop: that call saves, the uncounted change with it (in memory as stored)
    (95, "a change not counted, then a failure, on a call that saves", lambda s: s._transact(spend_then_fail),
     OrderRejected),
    (100, "cancel the stop after it filled", lambda s: s.cancel_order("BTCUSDT", "L3-sl"), OrderNotFound),
    (100, "sell what is left", market_order(Side.SELL, "3.497", "s2"), None),
]


async def test_every_call_leaves_the_kept_account_as_stored(tmp_path: Path) -> None:
    world = await World.open(write_candles(tmp_path), minutes(10))
    await world.assert_agree("opened")
    for minute, what, call, error in SCRIPT:
        world.clock.set(minutes(minute))
        if error is None:
            await call(world.cached)
        else:
            with pytest.raises(error):
                await call(world.cached)
        await world.assert_agree(f"at minute {minute}: {what}")


@pytest.fixture(scope="module")
def candles(tmp_path_factory: pytest.TempPathFactory) -> CandleStore:
    return write_candles(tmp_path_factory.mktemp("candles"))


QTYS = ["0.00001", "0.01", "0.123456", "0.5", "1", "1", "3", "50"]  # below the notional, off the step, fine, too much
IDS = ["a", "b", "c"]
# mostly OCOs the price allows (below 100 before the spike, below 108 after it), so that lists rest, fill and stop out
ocos = st.builds(oco, st.sampled_from(["0.5", "1", "1", "3", "0.00001"]), st.sampled_from(["90", "110", "110", "120"]),
                 st.sampled_from(["93", "95", "95", "101", "107"]), st.sampled_from(IDS))
calls = st.one_of(
    st.builds(lambda q, c: market_order(Side.BUY, q, c), st.sampled_from(QTYS), st.sampled_from(IDS)),
    st.builds(lambda q, c: market_order(Side.SELL, q, c), st.sampled_from(QTYS), st.sampled_from(IDS)),
    ocos,
    ocos,
    ocos,
    st.builds(lambda c: lambda s: s.cancel_oco_order("BTCUSDT", c), st.sampled_from(IDS)),
    st.builds(lambda c, leg: lambda s: s.cancel_order("BTCUSDT", f"{c}{leg}"), st.sampled_from(IDS),
              st.sampled_from(["", "-tp", "-sl"])),
    st.builds(lambda a: lambda s: s.fund("USDT", D(a)), st.sampled_from(["100", "-300", "-5000"])),
    st.just(market_order(Side.BUY, "1", "x", symbol="NOPEUSDT")),
    st.just(lambda s: s._transact(spend_then_fail)),
)


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(st.tuples(st.sampled_from([0, 5, 20, 45]), calls), min_size=10, max_size=40),
       in_cycle=st.booleans())
def test_any_run_of_calls_leaves_the_kept_account_as_stored(
    candles: CandleStore, steps: list[tuple[int, Call]], in_cycle: bool
) -> None:
    """Calls that fill, rest, trigger, are refused or fail half-way, at times moving over the spike and the drop,
    inside one engine cycle (copies trusted without a version read) or not."""

    async def run() -> None:
        world = await World.open(candles, minutes(10))
        async with world.store.cycle() if in_cycle else contextlib.nullcontext():
            minute = 10
            for wait, call in steps:
                minute = min(minute + wait, LAST_MINUTE)
                world.clock.set(minutes(minute))
                with contextlib.suppress(TradingError):  # refused or failed: the account must still agree
                    await call(world.cached)
                await world.assert_agree(f"at minute {minute}")

    asyncio.run(run())
