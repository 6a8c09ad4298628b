"""One contract for every ExchangeAdapter: MockBinanceService in process, BinanceService over HTTP to the simulator,
and MockBinanceService on the live market (a paper account on the simulator's public data, MARKET_SOURCE=live)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))

from exchange_sim_builders import START_BALANCES, at, http_exchange, make_market

from app.domain.clock import SimulatedClock, ms_from_utc
from app.domain.errors import InsufficientFunds, OrderNotFound, OrderRejected
from app.domain.ports import ExchangeAdapter
from app.domain.values import (
    Balance,
    ListStatus,
    OrderStatus,
    OrderType,
    PercentPrice,
    Side,
    SymbolRules,
    Timeframe,
)
from app.venues.binance.client import BinanceService
from app.venues.paper.accounts import InMemorySimAccountStore
from app.venues.paper.exchange import MockBinanceService
from app.venues.paper.live_market import LiveMarket
from app.venues.paper.market import SimulatedMarket

BTC = "BTCUSDT"


@dataclass
class Venue:
    name: str
    exchange: ExchangeAdapter
    clock: SimulatedClock
    market: SimulatedMarket


@pytest.fixture(params=["mock", "http", "paper-live"])
async def venue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Venue]:
    market = make_market(tmp_path)
    clock = SimulatedClock(at(120))
    if request.param == "mock":
        mock = await MockBinanceService.open_account("contract", market, InMemorySimAccountStore(), clock,
                                                     START_BALANCES)
        yield Venue("mock", mock, clock, market)
        return
    async with http_exchange(market, clock) as http:
        if request.param == "http":
            yield Venue("http", http.service, clock, market)
            return
        async with paper_on_the_live_market(http.server.base_url, market, clock) as paper:
            yield Venue("paper-live", paper, clock, market)


@asynccontextmanager
async def paper_on_the_live_market(base_url: str, market: SimulatedMarket,
                                   clock: SimulatedClock) -> AsyncIterator[MockBinanceService]:
    """A paper account whose market is the simulator's public data, read without a key."""
    source = BinanceService("", "", base_url, clock)
    live_market = LiveMarket(source, market.slippage_pct, market.fee_rate)
    try:
        yield await MockBinanceService.open_account("contract", live_market, InMemorySimAccountStore(), clock,
                                                    START_BALANCES)
    finally:
        await source.aclose()


async def buy(venue: Venue, client_id: str, qty: str = "10") -> Any:
    return await venue.exchange.place_market_order(BTC, Side.BUY, D(qty), client_id)


async def bracket(venue: Venue, list_id: str, take_profit: str, stop: str, limit: str, qty: str = "9.99") -> Any:
    return await venue.exchange.place_oco_order(BTC, D(qty), D(take_profit), D(stop), D(limit), list_id)


async def test_symbol_rules(venue: Venue) -> None:
    """Binance's rules for BTCUSDT as the data directory stores them, the same through either venue (the HTTP
    simulator serves them as exchangeInfo, which the client parses back), percent-price band and status included."""
    rules = await venue.exchange.get_symbol_rules(BTC)
    assert rules == SymbolRules(BTC, "BTC", "USDT", D("0.01"), D("0.00001"), D("0.00001"), D("9000"), D("5"),
                                D("0.01"), D("1000000"), percent_price=PercentPrice(D(5), D("0.2"), D(5), D("0.2")))
    assert rules.entry_problem() is None


async def test_klines_are_closed_candles_only(venue: Venue) -> None:
    venue.clock.set(at(122))  # inside candle 24: it must not appear, on any timeframe
    five = await venue.exchange.get_klines(BTC, Timeframe.M5, 3)
    assert [c.open_time_ms for c in five] == [ms_from_utc(at(m)) for m in (105, 110, 115)]
    assert five == venue.market.candles.closed_candles(BTC, Timeframe.M5, at(122), 3)
    hours = await venue.exchange.get_klines(BTC, Timeframe.H1, 5)
    assert [c.open_time_ms for c in hours] == [ms_from_utc(at(0)), ms_from_utc(at(60))]
    assert hours[-1].high == D("100.5") and hours[-1].close == D("100")
    quarter = await venue.exchange.get_klines(BTC, Timeframe.M15, 2)
    assert [c.open_time_ms for c in quarter] == [ms_from_utc(at(90)), ms_from_utc(at(105))]


async def test_price_and_starting_balances(venue: Venue) -> None:
    assert await venue.exchange.get_symbol_price(BTC) == D("100")
    assert await venue.exchange.get_balances() == [Balance("USDT", D("10000"))]
    assert await venue.exchange.get_account_balance("BTC") == Balance("BTC", D("0"))


async def test_market_buy_takes_the_fee_in_the_base_asset(venue: Venue) -> None:
    order = await buy(venue, "entry-1")
    assert (order.status, order.type, order.side, order.client_order_id) == (
        OrderStatus.FILLED, OrderType.MARKET, Side.BUY, "entry-1")
    assert (order.orig_qty, order.executed_qty, order.cumulative_quote_qty) == (D("10"), D("10"), D("1000.2"))
    assert [(f.price, f.qty, f.commission, f.commission_asset) for f in order.fills] == [
        (D("100.02"), D("10"), D("0.01"), "BTC")]
    assert order.commission_in("BTC") == D("0.01")
    assert await venue.exchange.get_balances() == [Balance("BTC", D("9.99")), Balance("USDT", D("8999.8"))]
    assert await venue.exchange.get_order(BTC, "entry-1") == order


async def test_oco_placement_locks_the_quantity_once(venue: Venue) -> None:
    await buy(venue, "entry-1")
    oco = await bracket(venue, "exit-1", "110", "95", "94")
    assert (oco.list_client_order_id, oco.list_status) == ("exit-1", ListStatus.EXECUTING)
    assert (oco.take_profit_leg.client_order_id, oco.take_profit_leg.price) == ("exit-1-tp", D("110"))
    assert (oco.stop_loss_leg.client_order_id, oco.stop_loss_leg.stop_price, oco.stop_loss_leg.price) == (
        "exit-1-sl", D("95"), D("94"))
    assert {leg.status for leg in oco.legs} == {OrderStatus.NEW}
    assert await venue.exchange.get_account_balance("BTC") == Balance("BTC", D("0"), D("9.99"))
    assert await venue.exchange.get_open_oco_orders() == [await venue.exchange.get_oco_order_status(BTC, "exit-1")]


async def test_take_profit_fills_when_a_candle_reaches_it(venue: Venue) -> None:
    await buy(venue, "entry-1")
    await bracket(venue, "exit-1", "110", "95", "94")
    venue.clock.set(at(130))
    oco = await venue.exchange.get_oco_order_status(BTC, "exit-1")
    assert oco.list_status == ListStatus.ALL_DONE
    assert (oco.take_profit_leg.status, oco.stop_loss_leg.status) == (OrderStatus.FILLED, OrderStatus.EXPIRED)
    assert oco.filled_leg == oco.take_profit_leg
    assert [(f.price, f.qty, f.commission, f.commission_asset) for f in oco.take_profit_leg.fills] == [
        (D("110"), D("9.99"), D("1.0989"), "USDT")]
    assert await venue.exchange.get_balances() == [Balance("USDT", D("10097.6011"))]
    assert await venue.exchange.get_open_oco_orders() == []


async def test_a_candle_trading_through_the_stop_fills_it_at_the_stop_less_the_slippage(venue: Venue) -> None:
    venue.clock.set(at(130))
    await buy(venue, "entry-2")
    await bracket(venue, "exit-2", "115", "100", "99")
    venue.clock.set(at(140))  # candle 27 (105, 106, 98.5, 99) falls through 100
    oco = await venue.exchange.get_oco_order_status(BTC, "exit-2")
    assert oco.list_status == ListStatus.ALL_DONE
    assert (oco.take_profit_leg.status, oco.stop_loss_leg.status) == (OrderStatus.EXPIRED, OrderStatus.FILLED)
    assert oco.stop_loss_leg.avg_price == D("99.98")  # 100 less 0.02 %, not the limit 99
    assert oco.stop_loss_leg.executed_qty == D("9.99")


async def test_a_candle_opening_below_the_stop_and_above_the_limit_fills_it_at_the_open(venue: Venue) -> None:
    venue.clock.set(at(140))
    await buy(venue, "entry-3")
    await bracket(venue, "exit-3", "105", "95", "91")
    venue.clock.set(at(150))  # candle 29 opens at 92, below the stop
    leg = (await venue.exchange.get_oco_order_status(BTC, "exit-3")).stop_loss_leg
    assert (leg.status, leg.avg_price) == (OrderStatus.FILLED, D("91.98"))  # 92 less 0.02 % (91.9816), to the tick


async def test_a_stop_resting_below_the_market_fills_at_the_first_price_a_later_candle_offers(venue: Venue) -> None:
    venue.clock.set(at(140))
    await buy(venue, "entry-3")
    await bracket(venue, "exit-3", "105", "95", "94")
    venue.clock.set(at(300))  # candles 29-59 stay below 94: the triggered stop rests
    assert (await venue.exchange.get_order(BTC, "exit-3-sl")).status == OrderStatus.NEW
    venue.clock.set(at(305))  # candle 60 opens at 95 after a close at 91
    leg = await venue.exchange.get_order(BTC, "exit-3-sl")
    assert (leg.status, leg.avg_price, leg.transact_time) == (OrderStatus.FILLED, D("95"), at(305))


async def test_gap_through_the_stop_leaves_the_leg_resting_while_the_list_is_done(venue: Venue) -> None:
    venue.clock.set(at(140))
    await buy(venue, "entry-3")
    await bracket(venue, "exit-3", "105", "95", "94")
    venue.clock.set(at(150))
    oco = await venue.exchange.get_oco_order_status(BTC, "exit-3")
    assert oco.list_status == ListStatus.ALL_DONE
    assert (oco.take_profit_leg.status, oco.stop_loss_leg.status) == (OrderStatus.EXPIRED, OrderStatus.NEW)
    assert oco.filled_leg is None
    assert await venue.exchange.get_open_oco_orders() == []
    assert await venue.exchange.get_account_balance("BTC") == Balance("BTC", D("0"), D("9.99"))
    cancelled = await venue.exchange.cancel_order(BTC, "exit-3-sl")
    assert (cancelled.client_order_id, cancelled.status) == ("exit-3-sl", OrderStatus.CANCELED)
    assert await venue.exchange.get_account_balance("BTC") == Balance("BTC", D("9.99"), D("0"))
    sold = await venue.exchange.place_market_order(BTC, Side.SELL, D("9.99"), "close-3")
    assert sold.fills[0].price == D("90.98") and sold.fills[0].commission_asset == "USDT"


async def test_cancel_oco_cancels_both_legs_and_unlocks(venue: Venue) -> None:
    await buy(venue, "entry-4")
    await bracket(venue, "exit-4", "110", "95", "94")
    oco = await venue.exchange.cancel_oco_order(BTC, "exit-4")
    assert oco.list_status == ListStatus.ALL_DONE
    assert {leg.status for leg in oco.legs} == {OrderStatus.CANCELED}
    assert await venue.exchange.get_account_balance("BTC") == Balance("BTC", D("9.99"), D("0"))
    status = await venue.exchange.get_oco_order_status(BTC, "exit-4")
    assert {leg.status for leg in status.legs} == {OrderStatus.CANCELED}
    with pytest.raises(OrderNotFound):
        await venue.exchange.cancel_oco_order(BTC, "exit-4")


async def test_errors_say_what_to_do(venue: Venue) -> None:
    with pytest.raises(InsufficientFunds):
        await buy(venue, "too-big", qty="1000")
    await buy(venue, "entry-5")
    with pytest.raises(OrderRejected) as bad_prices:
        await bracket(venue, "exit-5", "99", "95", "94")  # take profit below the last price
    assert not isinstance(bad_prices.value, InsufficientFunds)
    with pytest.raises(InsufficientFunds):
        await bracket(venue, "exit-5", "110", "95", "94", qty="20")
    with pytest.raises(OrderRejected):
        await bracket(venue, "exit-5", "110.001", "95", "94")  # off the tick
    with pytest.raises(OrderNotFound):
        await venue.exchange.get_order(BTC, "never-sent")
    with pytest.raises(OrderNotFound):
        await venue.exchange.cancel_order(BTC, "never-sent")
    with pytest.raises(OrderNotFound):
        await venue.exchange.get_oco_order_status(BTC, "never-sent")
    with pytest.raises(OrderNotFound):
        await venue.exchange.cancel_order(BTC, "entry-5")  # filled: nothing left to cancel
    assert await venue.exchange.get_open_oco_orders() == []


async def transcript(venue: Venue) -> list[Any]:
    """The whole script once, every answer kept, so two venues can be compared answer for answer."""
    answers: list[Any] = [await venue.exchange.get_symbol_rules(BTC), await venue.exchange.get_symbol_price(BTC)]
    for minute, entry, exit_prices in ((120, "e1", ("110", "95", "94")), (130, "e2", ("115", "100", "99")),
                                       (140, "e3", ("105", "95", "94"))):
        venue.clock.set(at(minute))
        answers.append(await venue.exchange.get_klines(BTC, Timeframe.M15, 4))
        answers.append(await buy(venue, entry))
        answers.append(await bracket(venue, f"x-{entry}", *exit_prices))
        venue.clock.set(at(minute + 10))
        answers.append(await venue.exchange.get_oco_order_status(BTC, f"x-{entry}"))
        answers.append(await venue.exchange.get_balances())
    answers.append(await venue.exchange.cancel_order(BTC, "x-e3-sl"))
    answers.append(await venue.exchange.get_order(BTC, "e2"))
    return answers


async def test_every_venue_answers_the_script_identically(tmp_path: Path) -> None:
    market = make_market(tmp_path)
    mock_clock, http_clock, paper_clock = SimulatedClock(at(120)), SimulatedClock(at(120)), SimulatedClock(at(120))
    mock = await MockBinanceService.open_account("contract", market, InMemorySimAccountStore(), mock_clock,
                                                 START_BALANCES)
    expected = await transcript(Venue("mock", mock, mock_clock, market))
    async with http_exchange(market, http_clock) as http:
        over_http = await transcript(Venue("http", http.service, http_clock, market))
    async with http_exchange(market, paper_clock) as http, \
            paper_on_the_live_market(http.server.base_url, market, paper_clock) as paper:
        on_the_live_market = await transcript(Venue("paper-live", paper, paper_clock, market))
    for actual in (over_http, on_the_live_market):
        assert len(actual) == len(expected) == 19
        for index, (got, want) in enumerate(zip(actual, expected, strict=True)):
            assert got == want, f"answer {index} differs"
