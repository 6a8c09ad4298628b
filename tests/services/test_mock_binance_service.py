"""MockBinanceService: fills, fees, OCO matching on closed candles, rejections and persistence form."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.clock import SimulatedClock, ms_from_utc
from app.domain.errors import InsufficientFunds, OrderNotFound, OrderRejected
from app.domain.values import Balance, Candle, ListStatus, OrderStatus, OrderType, Side, Timeframe
from app.marketdata.candle_files import HEADER
from app.marketdata.candles import CandleStore
from app.venues.paper.accounts import InMemorySimAccountStore, SimAccountState, SimAccountStore, SimOrder
from app.venues.paper.exchange import MockBinanceService
from app.venues.paper.market import SimulatedMarket
from app.venues.paper.matcher import resting_sell_price, triggered_stop_price
from tests.bundled import bundled_rules, store_bundled_rules

T0 = datetime(2025, 1, 1, tzinfo=UTC)
FLAT = ("100", "100.5", "99.5", "100")  # open, high, low, close of a quiet candle


def minutes(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


def build_store(tmp_path: Path, candles: list[tuple[str, str, str, str]]) -> CandleStore:
    """BTCUSDT 5m candles from T0, one every 5 minutes."""
    start = ms_from_utc(T0)
    rows = [f"{start + i * 300_000},{o},{h},{lo},{c},1" for i, (o, h, lo, c) in enumerate(candles)]
    (tmp_path / "binance_BTCUSDT_5m.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    store_bundled_rules(tmp_path)
    return CandleStore.load(tmp_path)


async def exchange(
    tmp_path: Path,
    candles: list[tuple[str, str, str, str]],
    at: datetime,
    slippage: str = "0",
    store: SimAccountStore | None = None,
) -> tuple[MockBinanceService, SimulatedClock]:
    clock = SimulatedClock(at)
    market = SimulatedMarket(build_store(tmp_path, candles), None, D(slippage))
    service = await MockBinanceService.open_account(
        "acct", market, store or InMemorySimAccountStore(), clock, {"USDT": D("1000"), "BTC": D("1")}
    )
    return service, clock


async def place_bracket(service: MockBinanceService, qty: str = "1", list_id: str = "L1") -> None:
    await service.place_oco_order("BTCUSDT", D(qty), D("110"), D("95"), D("94"), list_id)


@pytest.mark.asyncio
async def test_market_buy_fills_with_slippage_and_fee_in_base(tmp_path: Path) -> None:
    service, _ = await exchange(tmp_path, [FLAT] * 3, minutes(10), slippage="0.02")
    order = await service.place_market_order("BTCUSDT", Side.BUY, D("2"), "buy-1")
    assert order.status == OrderStatus.FILLED and order.price == 0
    (fill,) = order.fills
    assert fill.price == D("100.02")  # last close 100 * 1.0002
    assert (fill.commission, fill.commission_asset) == (D("0.002"), "BTC")
    assert order.cumulative_quote_qty == D("200.04")
    assert (await service.get_account_balance("USDT")).free == D("799.96")
    assert (await service.get_account_balance("BTC")).free == D("2.998")


@pytest.mark.asyncio
async def test_market_sell_fee_in_quote(tmp_path: Path) -> None:
    service, _ = await exchange(tmp_path, [FLAT] * 3, minutes(10), slippage="0.02")
    order = await service.place_market_order("BTCUSDT", Side.SELL, D("1"), "sell-1")
    assert order.fills[0].price == D("99.98")
    assert (order.fills[0].commission, order.fills[0].commission_asset) == (D("0.09998"), "USDT")
    assert (await service.get_account_balance("USDT")).free == D("1000") + D("99.98") - D("0.09998")


@pytest.mark.asyncio
async def test_no_lookahead_prices_and_klines_use_closed_candles_only(tmp_path: Path) -> None:
    candles = [FLAT, ("100", "101", "99", "101"), ("101", "500", "1", "300")]
    service, clock = await exchange(tmp_path, candles, minutes(14))
    assert await service.get_symbol_price("BTCUSDT") == D("101")  # candle 2 closes at minute 15
    klines = await service.get_klines("BTCUSDT", Timeframe.M5, 10)
    assert [k.close for k in klines] == [D("100"), D("101")]
    await place_bracket(service)
    clock.set(minutes(14) + timedelta(seconds=59))
    status = await service.get_oco_order_status("BTCUSDT", "L1")
    assert status.is_open  # the wild candle 2 opened before the list was placed: never evaluated


@pytest.mark.asyncio
async def test_take_profit_fills_at_its_price(tmp_path: Path) -> None:
    candles = [FLAT, FLAT, FLAT, ("100", "110", "99", "109")]
    service, clock = await exchange(tmp_path, candles, minutes(15))
    await place_bracket(service)
    assert (await service.get_account_balance("BTC")).locked == D("1")
    clock.set(minutes(20))
    oco = await service.get_oco_order_status("BTCUSDT", "L1")
    assert oco.list_status == ListStatus.ALL_DONE
    assert oco.take_profit_leg.status == OrderStatus.FILLED and oco.stop_loss_leg.status == OrderStatus.EXPIRED
    assert oco.take_profit_leg.fills[0].price == D("110") and oco.take_profit_leg.fills[0].commission == D("0.11")
    assert (await service.get_account_balance("BTC")).total == 0
    assert (await service.get_account_balance("USDT")).free == D("1000") + D("110") - D("0.11")


@pytest.mark.asyncio
async def test_asking_again_at_the_same_time_evaluates_nothing_twice_and_a_new_list_waits(tmp_path: Path) -> None:
    """The engine asks about its lists twice a cycle: the second ask finds the candles already evaluated, and a
    list placed between the asks rests from the next candle, even one that would have filled it at once."""
    candles = [FLAT, FLAT, FLAT, ("100", "110", "99", "109"), ("109", "111", "108", "110")]
    service, clock = await exchange(tmp_path, candles, minutes(15))
    await place_bracket(service, qty="0.5", list_id="L1")
    clock.set(minutes(20))
    assert (await service.get_oco_order_status("BTCUSDT", "L1")).list_status == ListStatus.ALL_DONE
    await place_bracket(service, qty="0.5", list_id="L2")  # at minute 20: candle 3 (high 110) is past for it
    assert (await service.get_oco_order_status("BTCUSDT", "L2")).is_open
    assert len((await service.get_oco_order_status("BTCUSDT", "L1")).take_profit_leg.fills) == 1
    clock.set(minutes(25))
    assert (await service.get_oco_order_status("BTCUSDT", "L2")).take_profit_leg.status == OrderStatus.FILLED


@pytest.mark.asyncio
async def test_a_list_answer_is_reused_only_while_nothing_changed(tmp_path: Path) -> None:
    candles = [FLAT, FLAT, FLAT, FLAT, ("100", "110", "99", "109")]
    service, clock = await exchange(tmp_path, candles, minutes(15))
    await place_bracket(service, qty="0.5")
    clock.set(minutes(20))  # a flat candle closed: nothing happened to the list
    first = await service.get_oco_order_status("BTCUSDT", "L1")
    assert (await service.get_open_oco_orders())[0] is first
    assert await service.get_oco_order_status("BTCUSDT", "L1") is first and first.is_open
    clock.set(minutes(25))  # the take profit fills
    filled = await service.get_oco_order_status("BTCUSDT", "L1")
    assert filled.list_status == ListStatus.ALL_DONE and filled.take_profit_leg.status == OrderStatus.FILLED
    assert first.is_open  # the earlier answer itself is untouched
    await place_bracket(service, qty="0.5", list_id="L2")
    placed = await service.get_oco_order_status("BTCUSDT", "L2")
    cancelled = await service.cancel_oco_order("BTCUSDT", "L2")
    assert placed.is_open and {leg.status for leg in cancelled.legs} == {OrderStatus.CANCELED}
    assert await service.get_oco_order_status("BTCUSDT", "L2") == cancelled


async def fills_of(tmp_path: Path, candle: tuple[str, str, str, str], slippage: str = "0",
                   later: tuple[tuple[str, str, str, str], ...] = ()) -> dict[str, tuple[OrderStatus, D | None]]:
    """The bracket (TP 110, stop 95, limit 94, placed at the close of three quiet candles) after `candle` and the
    `later` ones have closed: each leg's status and fill price."""
    service, clock = await exchange(tmp_path, [FLAT, FLAT, FLAT, candle, *later], minutes(15), slippage)
    await place_bracket(service)
    clock.set(minutes(20 + 5 * len(later)))
    legs = (await service.get_oco_order_status("BTCUSDT", "L1")).legs
    stop_leg = await service.get_order("BTCUSDT", "L1-sl")  # the list answer is its state when the list ended
    return {leg.client_order_id: (leg.status, leg.fills[0].price if leg.fills else None)
            for leg in (*legs, stop_leg)}


TP, SL = "L1-tp", "L1-sl"


@pytest.mark.asyncio
async def test_a_candle_trading_through_the_stop_fills_it_at_the_stop_not_at_its_limit(tmp_path: Path) -> None:
    """The stop (95) triggers as the price falls through it and its limit (94) is marketable: it sells at the
    stop, though the candle's low (94.5) never reached the limit."""
    fills = await fills_of(tmp_path, ("99", "99", "94.5", "95"))
    assert fills == {SL: (OrderStatus.FILLED, D("95")), TP: (OrderStatus.EXPIRED, None)}


@pytest.mark.asyncio
@pytest.mark.parametrize(("slippage", "low", "expected"), [
    ("0.02", "94.5", "94.98"),  # 95 x 0.9998 = 94.981, snapped down to the tick (0.01)
    ("0.004", "94.5", "94.99"),  # 94.9962: down to the tick against the seller, not to the nearest (95.00)
    ("0.02", "94.99", "94.99"),  # the slipped price would be below anything the candle traded: its low
    ("2", "93", "94"),  # 93.1 would be below the limit: a limit order sells at its limit or better
])
async def test_a_triggered_stop_sells_at_the_stop_less_the_slippage_within_its_candle_and_limit(
        tmp_path: Path, slippage: str, low: str, expected: str) -> None:
    fills = await fills_of(tmp_path, ("99", "99", low, "95"), slippage)
    assert fills[SL] == (OrderStatus.FILLED, D(expected))


@pytest.mark.asyncio
@pytest.mark.parametrize(("slippage", "expected"), [("0", "94.5"), ("0.02", "94.48")])
async def test_a_candle_opening_below_the_stop_and_above_the_limit_fills_it_at_the_open(
        tmp_path: Path, slippage: str, expected: str) -> None:
    """Gap down: the stop triggers at the open (94.5), less the slippage (94.4811 -> 94.48), never at the limit."""
    fills = await fills_of(tmp_path, ("94.5", "94.8", "94.2", "94.6"), slippage)
    assert fills[SL] == (OrderStatus.FILLED, D(expected))


@pytest.mark.asyncio
async def test_a_candle_opening_below_the_limit_fills_the_stop_at_its_limit_when_it_trades_back_up(
        tmp_path: Path) -> None:
    fills = await fills_of(tmp_path, ("93", "94.5", "92", "93.5"), slippage="0.02")
    assert fills[SL] == (OrderStatus.FILLED, D("94"))  # a resting limit: its own price, no slippage


@pytest.mark.asyncio
@pytest.mark.parametrize(("later", "expected"), [
    (("92", "93.5", "91", "93"), None),  # still below the limit: it rests on
    (("93", "96", "92", "95"), D("94")),  # opens below the limit and trades up to it: the limit
    (("94.5", "95", "94.2", "94.8"), D("94.5")),  # opens above the limit: the open, the first price printed there
])
async def test_a_stop_whose_whole_candle_is_below_its_limit_rests_and_fills_in_a_later_candle(
        tmp_path: Path, later: tuple[str, str, str, str], expected: D | None) -> None:
    fills = await fills_of(tmp_path, ("90", "93", "88", "92"), slippage="0.02", later=(later,))
    assert fills[TP] == (OrderStatus.EXPIRED, None)
    assert fills[SL] == ((OrderStatus.NEW, None) if expected is None else (OrderStatus.FILLED, expected))


@pytest.mark.asyncio
async def test_candle_touching_both_legs_fills_the_stop(tmp_path: Path) -> None:
    fills = await fills_of(tmp_path, ("100", "111", "90", "100"), slippage="0.02")
    assert fills == {SL: (OrderStatus.FILLED, D("94.98")), TP: (OrderStatus.EXPIRED, None)}


@pytest.mark.asyncio
@pytest.mark.parametrize(("candle", "expected"), [
    (("111", "112", "110.5", "111.5"), "111"),  # opens above it (gap up): the open, not 110 below the candle's low
    (("111", "112", "90", "91"), "111"),  # opens above it and then falls through the stop: the open came first
])
async def test_a_candle_opening_above_the_take_profit_fills_it_at_the_open(
        tmp_path: Path, candle: tuple[str, str, str, str], expected: str) -> None:
    fills = await fills_of(tmp_path, candle, slippage="0.02")
    assert fills == {TP: (OrderStatus.FILLED, D(expected)), SL: (OrderStatus.EXPIRED, None)}


@pytest.mark.asyncio
async def test_stop_limit_gapped_through_rests_until_price_returns(tmp_path: Path) -> None:
    candles = [FLAT, FLAT, FLAT, ("90", "93", "88", "92"), ("92", "93.5", "91", "93"), ("93", "96", "92", "95")]
    service, clock = await exchange(tmp_path, candles, minutes(15))
    await place_bracket(service)
    clock.set(minutes(25))
    oco = await service.get_oco_order_status("BTCUSDT", "L1")
    assert oco.list_status == ListStatus.ALL_DONE and not oco.is_open
    assert oco.stop_loss_leg.status == OrderStatus.NEW and oco.take_profit_leg.status == OrderStatus.EXPIRED
    assert (await service.get_account_balance("BTC")).locked == D("1")
    assert await service.get_open_oco_orders() == []
    clock.set(minutes(30))
    stop = await service.get_order("BTCUSDT", "L1-sl")
    assert stop.status == OrderStatus.FILLED and stop.fills[0].price == D("94")
    assert stop.transact_time == minutes(30)
    assert (await service.get_account_balance("USDT")).free == D("1000") + D("94") - D("0.094")


TICK = D("0.01")
ticks = st.integers(min_value=1, max_value=20_000)


@st.composite
def candles_and_stops(draw: st.DrawFn) -> tuple[Candle, SimOrder]:
    """Any candle on the tick grid that reaches a stop-limit's trigger, and the stop (limit at or below the trigger)."""
    low, open_, close = draw(ticks), draw(ticks), draw(ticks)
    low = min(low, open_, close)
    high = max(open_, close) + draw(st.integers(min_value=0, max_value=500))
    stop = low + draw(st.integers(min_value=0, max_value=2_000))
    limit = max(1, stop - draw(st.integers(min_value=0, max_value=2_000)))
    candle = Candle(0, open_ * TICK, high * TICK, low * TICK, close * TICK, D(1))
    order = SimOrder(1, "L1-sl", "BTCUSDT", Side.SELL, OrderType.STOP_LOSS_LIMIT, OrderStatus.NEW, D(1),
                     price=limit * TICK, stop_price=stop * TICK)
    return candle, order


@given(candles_and_stops(), st.decimals(min_value=0, max_value=5, places=3))
def test_a_stop_fill_is_never_outside_its_candle_nor_below_its_limit(case: tuple[Candle, SimOrder],
                                                                      slippage: D) -> None:
    candle, stop = case
    rules = bundled_rules()["BTCUSDT"]  # tick 0.01
    for price in (triggered_stop_price(candle, stop, slippage, rules), resting_sell_price(candle, stop.price)):
        if price is None:
            assert candle.high < stop.price
        else:
            assert candle.low <= price <= candle.high and price >= stop.price and price % TICK == 0


@pytest.mark.asyncio
async def test_cancel_oco_unlocks_and_second_cancel_is_rejected(tmp_path: Path) -> None:
    service, _ = await exchange(tmp_path, [FLAT] * 4, minutes(15))
    await place_bracket(service, qty="0.5")
    assert await service.get_account_balance("BTC") == Balance("BTC", D("0.5"), D("0.5"))
    oco = await service.cancel_oco_order("BTCUSDT", "L1")
    assert oco.list_status == ListStatus.ALL_DONE
    assert {leg.status for leg in oco.legs} == {OrderStatus.CANCELED}
    balance = await service.get_account_balance("BTC")
    assert (balance.free, balance.locked) == (D("1"), D("0"))
    with pytest.raises(OrderNotFound) as caught:  # Binance's -2011 "Unknown order sent.", as BinanceService maps it
        await service.cancel_oco_order("BTCUSDT", "L1")
    assert caught.value.code == -2011


@pytest.mark.asyncio
async def test_cancel_order_on_triggered_stop_unlocks(tmp_path: Path) -> None:
    candles = [FLAT, FLAT, FLAT, ("90", "93", "88", "92")]
    service, clock = await exchange(tmp_path, candles, minutes(15))
    await place_bracket(service)
    clock.set(minutes(20))
    cancelled = await service.cancel_order("BTCUSDT", "L1-sl")
    assert cancelled.status == OrderStatus.CANCELED
    assert (await service.get_account_balance("BTC")).free == D("1")


@pytest.mark.asyncio
async def test_insufficient_funds(tmp_path: Path) -> None:
    service, _ = await exchange(tmp_path, [FLAT] * 3, minutes(15))
    with pytest.raises(InsufficientFunds) as caught:
        await service.place_market_order("BTCUSDT", Side.BUY, D("10.1"), "big")
    assert caught.value.code == -2010 and "insufficient balance" in str(caught.value)
    with pytest.raises(InsufficientFunds):
        await service.place_market_order("BTCUSDT", Side.SELL, D("1.00001"), "short")
    with pytest.raises(InsufficientFunds):
        await place_bracket(service, qty="1.5")
    assert (await service.get_account_balance("USDT")).free == D("1000")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("qty", "take_profit", "stop", "expected"),
    [
        ("0.000001", "110", "95", "LOT_SIZE"),
        ("0.01", "110", "95", "NOTIONAL"),
        ("1", "110.005", "95", "PRICE_FILTER"),
        ("1", "110", "95.001", "PRICE_FILTER"),
        ("1", "500.01", "95", "PERCENT_PRICE_BY_SIDE"),  # above 5 x the last price (100), Binance's ask band
    ],
)
async def test_oco_filter_failures(tmp_path: Path, qty: str, take_profit: str, stop: str, expected: str) -> None:
    service, _ = await exchange(tmp_path, [FLAT] * 3, minutes(15))
    with pytest.raises(OrderRejected) as caught:
        await service.place_oco_order("BTCUSDT", D(qty), D(take_profit), D(stop), D("94"), "L1")
    assert str(caught.value).startswith(f"Filter failure: {expected}") and caught.value.code == -1013
    assert (await service.get_account_balance("BTC")).locked == 0


@pytest.mark.asyncio
async def test_market_filter_failure_and_price_relationship(tmp_path: Path) -> None:
    service, _ = await exchange(tmp_path, [FLAT] * 3, minutes(15))
    with pytest.raises(OrderRejected, match="Filter failure: NOTIONAL"):
        await service.place_market_order("BTCUSDT", Side.BUY, D("0.04"), "tiny")
    with pytest.raises(OrderRejected, match="Filter failure: LOT_SIZE"):
        await service.place_market_order("BTCUSDT", Side.BUY, D("0.123456"), "offstep")
    with pytest.raises(OrderRejected, match="relationship of the prices") as caught:
        await service.place_oco_order("BTCUSDT", D("1"), D("99"), D("95"), D("94"), "L1")
    assert caught.value.code == -2010


@pytest.mark.asyncio
async def test_duplicate_open_client_ids_are_rejected(tmp_path: Path) -> None:
    service, _ = await exchange(tmp_path, [FLAT] * 3, minutes(15))
    await place_bracket(service, qty="0.4")
    with pytest.raises(OrderRejected, match="Duplicate order sent.") as caught:
        await place_bracket(service, qty="0.4")
    assert caught.value.code == -2010
    with pytest.raises(OrderRejected, match="Duplicate order sent."):
        await service.place_market_order("BTCUSDT", Side.SELL, D("0.1"), "L1-tp")
    await service.place_market_order("BTCUSDT", Side.SELL, D("0.1"), "m1")
    await service.place_market_order("BTCUSDT", Side.SELL, D("0.1"), "m1")  # the first one already filled
    assert (await service.get_order("BTCUSDT", "m1")).order_id == 4


@pytest.mark.asyncio
async def test_unknown_orders_raise_order_not_found(tmp_path: Path) -> None:
    service, _ = await exchange(tmp_path, [FLAT] * 3, minutes(15))
    with pytest.raises(OrderNotFound):
        await service.get_order("BTCUSDT", "nope")
    with pytest.raises(OrderNotFound):
        await service.get_oco_order_status("BTCUSDT", "nope")


async def scripted_run(tmp_path: Path, store: SimAccountStore | None = None) -> tuple[MockBinanceService, list[object]]:
    candles = [FLAT, FLAT, FLAT, FLAT, ("100", "111", "99", "108"), FLAT, ("90", "93", "88", "92")]
    service, clock = await exchange(tmp_path, candles, minutes(15), store=store)
    results: list[object] = [await service.place_market_order("BTCUSDT", Side.BUY, D("1"), "b1")]
    await place_bracket(service, qty="0.5", list_id="A")
    clock.set(minutes(17))
    await service.place_oco_order("BTCUSDT", D("1"), D("120"), D("95"), D("94"), "B")
    clock.set(minutes(40))
    results += [await service.get_oco_order_status("BTCUSDT", x) for x in ("A", "B")]
    results.append(await service.get_balances())
    return service, results


@pytest.mark.asyncio
async def test_same_calls_same_results_and_state_round_trips(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, results_a = await scripted_run(tmp_path / "a")
    _, results_b = await scripted_run(tmp_path / "b")
    assert results_a == results_b
    snapshot = await first.state_snapshot()
    restored = SimAccountState.from_dict(json.loads(json.dumps(snapshot)))
    assert restored.to_dict() == snapshot
    assert restored.balances["BTC"] == (D("0.499"), D("1"))  # A took profit; B's stop triggered and still rests
    assert [D(text) for text in snapshot["balances"]["BTC"]] == [D("0.499"), D("1")]


class JsonSimAccountStore:
    """Keeps only the JSON text of each account, as a database row would."""

    def __init__(self) -> None:
        self.rows: dict[str, str] = {}

    async def load(self, account_id: str) -> SimAccountState | None:
        text = self.rows.get(account_id)
        return None if text is None else SimAccountState.from_dict(json.loads(text))

    async def save(self, account_id: str, state: SimAccountState) -> None:
        self.rows[account_id] = json.dumps(state.to_dict())

    def forget(self, account_id: str) -> None:
        """Nothing kept but the text: every load is read from it."""


@pytest.mark.asyncio
async def test_account_persisted_as_json_behaves_the_same(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _, in_memory = await scripted_run(tmp_path / "a")
    _, through_json = await scripted_run(tmp_path / "b", JsonSimAccountStore())
    assert through_json == in_memory


@pytest.mark.asyncio
async def test_market_order_beyond_the_liquidity_fills_part_and_expires(tmp_path: Path) -> None:
    service, _ = await exchange(tmp_path, [FLAT] * 3, minutes(10))
    order = await service.place_market_order("BTCUSDT", Side.BUY, D("2"), "thin-1", available_qty=D("0.7500009"))
    assert (order.status, order.orig_qty, order.executed_qty) == (OrderStatus.EXPIRED, D("2"), D("0.75"))
    assert order.fills[0].qty == D("0.75") and order.cumulative_quote_qty == D("75")
    assert (await service.get_account_balance("BTC")).free == D("1") + D("0.75") - D("0.00075")
    assert (await service.get_account_balance("USDT")).free == D("925")
    empty = await service.place_market_order("BTCUSDT", Side.SELL, D("1"), "thin-2", available_qty=D("0"))
    assert (empty.status, empty.executed_qty, empty.fills) == (OrderStatus.EXPIRED, D("0"), ())
    assert [o.client_order_id for o in await service.list_orders()] == ["thin-1", "thin-2"]
