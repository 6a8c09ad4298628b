"""Order entry on a paper account, as Binance answers it: entry checks and error codes, market fills, OCOs, cancels."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

from app.domain.errors import InsufficientFunds, OrderNotFound, OrderRejected
from app.domain.values import (
    Fill,
    ListStatus,
    OcoOrder,
    Order,
    OrderStatus,
    OrderType,
    Side,
    SymbolRules,
    oco_leg_client_ids,
)
from app.venues.paper.accounts import SimAccountState, SimOrder, SimOrderList, oco_answer, open_lists, open_orders
from app.venues.paper.market import FIVE_MIN_MS, PaperMarket

T = TypeVar("T")

FILTER_FAILURE = -1013
NEW_ORDER_REJECTED = -2010
CANCEL_REJECTED = -2011
NO_SUCH_ORDER = -2013
INSUFFICIENT_BALANCE = "Account has insufficient balance for requested action."


@dataclass(frozen=True, slots=True)
class MarketRequest:
    symbol: str
    side: Side
    quantity: Decimal
    client_order_id: str
    available_qty: Decimal | None = None


@dataclass(frozen=True, slots=True)
class OcoRequest:
    symbol: str
    quantity: Decimal
    take_profit: Decimal
    stop_price: Decimal
    stop_limit_price: Decimal
    list_client_order_id: str

    @property
    def detail(self) -> str:
        return (
            f"SELL OCO {self.quantity} {self.symbol} TP {self.take_profit} stop {self.stop_price} "
            f"limit {self.stop_limit_price}"
        )


# ---------------------------------------------------------------------------------------------------------------
# Order entry checks, Binance's order: filters (-1013), then price relations and balances (-2010).


def _reject(message: str, code: int, detail: str) -> OrderRejected:
    return OrderRejected(f"{message} ({detail})", code)


def _unknown_order(detail: str) -> OrderNotFound:
    """Binance's -2011 for a cancel of an order that is already final: nothing left to cancel."""
    return OrderNotFound(f"Unknown order sent. ({detail})", CANCEL_REJECTED)


def _check_quantity(rules: SymbolRules, qty: Decimal, detail: str) -> None:
    if qty < rules.min_qty or (rules.max_qty and qty > rules.max_qty) or qty % rules.step_size != 0:
        raise _reject("Filter failure: LOT_SIZE", FILTER_FAILURE, detail)


def _check_price(rules: SymbolRules, price: Decimal, detail: str) -> None:
    if rules.price_problem(price) is not None:
        raise _reject("Filter failure: PRICE_FILTER", FILTER_FAILURE, detail)


def _check_percent_price(rules: SymbolRules, price: Decimal, reference: Decimal, detail: str) -> None:
    """A SELL limit price within the ask multipliers of the reference price (Binance's average price over
    avgPriceMins; the simulator uses the last price)."""
    band = rules.percent_price
    if band is None:
        return
    low, high = band.bounds(Side.SELL, reference)
    if not low <= price <= high:
        raise _reject("Filter failure: PERCENT_PRICE_BY_SIDE", FILTER_FAILURE, f"{detail}; allowed {low} to {high}")


def _check_notional(rules: SymbolRules, qty: Decimal, price: Decimal, detail: str) -> None:
    if qty * price < rules.min_notional:
        raise _reject("Filter failure: NOTIONAL", FILTER_FAILURE, detail)


def _check_funds(state: SimAccountState, asset: str, needed: Decimal, detail: str) -> None:
    if state.free(asset) < needed:
        raise InsufficientFunds(
            f"{INSUFFICIENT_BALANCE} ({detail}; needs {needed} {asset}, free {state.free(asset)})", NEW_ORDER_REJECTED
        )


def _check_unique_order_id(state: SimAccountState, client_order_id: str, detail: str) -> None:
    """Binance refuses a client id only while an earlier order with it is still open."""
    if any(o.client_order_id == client_order_id for o in open_orders(state)):
        raise _reject("Duplicate order sent.", NEW_ORDER_REJECTED, detail)


def _check_unique_list_id(state: SimAccountState, list_client_order_id: str, detail: str) -> None:
    for order_list in open_lists(state):
        if order_list.list_client_order_id == list_client_order_id and order_list.status == ListStatus.EXECUTING:
            raise _reject("Duplicate order sent.", NEW_ORDER_REJECTED, detail)
    for leg_id in oco_leg_client_ids(list_client_order_id):
        _check_unique_order_id(state, leg_id, detail)


# ---------------------------------------------------------------------------------------------------------------
# Finding an order or a list by its client id: the newest one, as Binance answers.


def _newest_first(items: dict[int, T]) -> Iterator[T]:
    """Values by descending id without sorting: ids are handed out ascending and dicts keep insertion order
    (from_dict restores them sorted), so the newest match is found after a few steps instead of a full sort."""
    return reversed(items.values())


def find_order(state: SimAccountState, symbol: str, client_order_id: str) -> SimOrder:
    """The newest order with this client id (an id may be reused once the earlier order is final)."""
    for order in _newest_first(state.orders):
        if order.client_order_id == client_order_id and order.symbol == symbol:
            return order
    raise OrderNotFound(f"Order does not exist. ({symbol} {client_order_id})", NO_SUCH_ORDER)


def find_list(state: SimAccountState, symbol: str, list_client_order_id: str) -> SimOrderList:
    for order_list in _newest_first(state.order_lists):
        if order_list.list_client_order_id == list_client_order_id and order_list.symbol == symbol:
            return order_list
    raise OrderNotFound(f"Order list does not exist. ({symbol} {list_client_order_id})", NO_SUCH_ORDER)


# ---------------------------------------------------------------------------------------------------------------
# Acting on an account's state.


class OrderEntry:
    """Places and cancels orders on an account state at a time; the caller loads, catches up and saves the state."""

    def __init__(self, market: PaperMarket) -> None:
        self._market = market

    def market_order(self, state: SimAccountState, now_ms: int, request: MarketRequest) -> Order:
        """Fills at once at the last price, the close of the 5m candle closed last at `now_ms` (its candle), moved
        against the taker by the slippage and snapped to the tick. The slippage stands for the spread and the move
        between that last trade and the order's arrival, which no candle records: the one fill price that may lie
        outside its candle, by the slippage and no more (with no slippage it is the close). Resting orders fill
        inside their candle: see the matcher."""
        symbol, side, qty, client_order_id = request.symbol, request.side, request.quantity, request.client_order_id
        rules = self._market.rules(symbol)
        last = self._market.last_price(symbol, now_ms)
        detail = f"MARKET {side} {qty} {symbol} at ~{last}"
        _check_quantity(rules, qty, detail)
        _check_notional(rules, qty, last, detail)
        _check_unique_order_id(state, client_order_id, detail)
        price = self._market.market_price(symbol, side, now_ms)
        quote = qty * price
        _check_funds(state, *((rules.quote_asset, quote) if side == Side.BUY else (rules.base_asset, qty)), detail)
        order = self._new_order(state, symbol, client_order_id, side, OrderType.MARKET, qty, now_ms)
        filled_qty = qty if request.available_qty is None else min(qty, rules.round_qty(request.available_qty))
        if filled_qty > 0:
            self._fill_market(state, order, rules, price, filled_qty)
        if filled_qty < qty:
            order.status = OrderStatus.EXPIRED  # Binance: a MARKET order out of liquidity expires part-filled
        return order.to_order()

    def _fill_market(
        self, state: SimAccountState, order: SimOrder, rules: SymbolRules, price: Decimal, qty: Decimal
    ) -> None:
        """Commission comes out of what the account receives: base on a BUY, quote on a SELL."""
        quote = qty * price
        if order.side == Side.BUY:
            fee, fee_asset = self._market.fee(qty), rules.base_asset
            state.move(rules.quote_asset, free_delta=-quote)
            state.move(rules.base_asset, free_delta=qty - fee)
        else:
            fee, fee_asset = self._market.fee(quote), rules.quote_asset
            state.move(rules.base_asset, free_delta=-qty)
            state.move(rules.quote_asset, free_delta=quote - fee)
        order.fills.append(Fill(price, qty, fee, fee_asset, state.next_trade_id))
        state.next_trade_id += 1
        order.status = OrderStatus.FILLED
        order.executed_qty = qty
        order.cumulative_quote_qty = quote

    def place_oco(self, state: SimAccountState, now_ms: int, request: OcoRequest) -> OcoOrder:
        rules = self._market.rules(request.symbol)
        self._check_oco(state, now_ms, rules, request)
        list_id = state.next_list_id
        state.next_list_id += 1
        take_profit_id, stop_id = oco_leg_client_ids(request.list_client_order_id)
        stop = self._new_order(
            state,
            request.symbol,
            stop_id,
            Side.SELL,
            OrderType.STOP_LOSS_LIMIT,
            request.quantity,
            now_ms,
            list_id,
        )
        stop.price, stop.stop_price = request.stop_limit_price, request.stop_price
        take_profit = self._new_order(
            state,
            request.symbol,
            take_profit_id,
            Side.SELL,
            OrderType.LIMIT_MAKER,
            request.quantity,
            now_ms,
            list_id,
        )
        take_profit.price = request.take_profit
        # the first candle that opens at or after placement is the first one the legs can trade on
        stop.next_candle_ms = -(-now_ms // FIVE_MIN_MS) * FIVE_MIN_MS
        state.order_lists[list_id] = SimOrderList(
            list_id,
            request.list_client_order_id,
            request.symbol,
            ListStatus.EXECUTING,
            stop.order_id,
            take_profit.order_id,
            now_ms,
        )
        state.move(rules.base_asset, free_delta=-request.quantity, locked_delta=request.quantity)
        return oco_answer(state, state.order_lists[list_id])

    def _check_oco(self, state: SimAccountState, now_ms: int, rules: SymbolRules, request: OcoRequest) -> None:
        detail = request.detail
        _check_quantity(rules, request.quantity, detail)
        for price in (request.take_profit, request.stop_price, request.stop_limit_price):
            _check_price(rules, price, detail)
        for price in (request.take_profit, request.stop_limit_price):
            _check_notional(rules, request.quantity, price, detail)
        _check_unique_list_id(state, request.list_client_order_id, detail)
        last = self._market.last_price(request.symbol, now_ms)
        for price in (request.take_profit, request.stop_limit_price):
            _check_percent_price(rules, price, last, detail)
        if not request.take_profit > last > request.stop_price:
            raise _reject(
                "The relationship of the prices for the orders is not correct.",
                NEW_ORDER_REJECTED,
                f"{detail}; last price {last}",
            )
        _check_funds(state, rules.base_asset, request.quantity, detail)

    def _new_order(
        self,
        state: SimAccountState,
        symbol: str,
        client_order_id: str,
        side: Side,
        order_type: OrderType,
        qty: Decimal,
        now_ms: int,
        order_list_id: int = -1,
    ) -> SimOrder:
        order = SimOrder(
            state.next_order_id,
            client_order_id,
            symbol,
            side,
            order_type,
            OrderStatus.NEW,
            qty,
            order_list_id=order_list_id,
            transact_ms=now_ms,
        )
        state.orders[order.order_id] = order
        state.open_orders[order.order_id] = order
        state.next_order_id += 1
        state.revision += 1
        return order

    def cancel_list(self, state: SimAccountState, order_list: SimOrderList, now_ms: int) -> None:
        """Cancel every leg still open; a list already done with nothing resting is an unknown order to Binance."""
        legs = [state.orders[i] for i in (order_list.stop_leg_id, order_list.take_profit_leg_id)]
        open_legs = [leg for leg in legs if not leg.status.is_final]
        if not open_legs:
            raise _unknown_order(f"order list {order_list.list_client_order_id} is done")
        for leg in open_legs:
            leg.status = OrderStatus.CANCELED
            leg.transact_ms = now_ms
        order_list.status = ListStatus.ALL_DONE
        # both legs share one locked quantity (locked once at placement)
        state.move(
            self._market.rules(order_list.symbol).base_asset,
            free_delta=open_legs[0].orig_qty,
            locked_delta=-open_legs[0].orig_qty,
        )

    def cancel_order(self, state: SimAccountState, symbol: str, client_order_id: str, now_ms: int) -> Order:
        order = find_order(state, symbol, client_order_id)
        if order.status.is_final:
            raise _unknown_order(f"{client_order_id} is {order.status}")
        order_list = state.order_lists.get(order.order_list_id)
        if order_list is None:
            raise _unknown_order(f"{client_order_id} has no resting quantity")
        # cancelling one leg cancels the whole list, as on Binance
        self.cancel_list(state, order_list, now_ms)
        return order.to_order()
