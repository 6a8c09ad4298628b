"""Catch-up of a paper account: resting OCO legs and triggered stops evaluated against each 5m candle closed since."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from app.domain.values import ZERO, Candle, Fill, ListStatus, OrderStatus, OrderType, SymbolRules, Timeframe
from app.venues.paper.accounts import SimAccountState, SimOrder, open_orders
from app.venues.paper.fill_rules import resting_limit_sell_price, triggered_stop_limit_sell_price
from app.venues.paper.market import FIVE_MIN_MS, PaperMarket


@dataclass(frozen=True, slots=True)
class _Event:
    candle_open_ms: int
    order_id: int  # the stop leg's id: it identifies both an executing list and a triggered stop
    candle: Candle


_SCALAR_ROWS = 16


class Matcher:
    """Evaluates resting OCO legs candle by candle, in time order, up to the last 5m candle closed at `now`."""

    def __init__(self, market: PaperMarket) -> None:
        self._market = market

    def candles_needed(self, state: SimAccountState, now_ms: int) -> dict[str, int]:
        """The open time of the first 5m candle a catch-up at `now_ms` reads, per symbol (none when caught up)."""
        if now_ms <= state.last_evaluated_ms:
            return {}
        horizon_ms = now_ms // FIVE_MIN_MS * FIVE_MIN_MS
        needed: dict[str, int] = {}
        for stop in _watched_stops(state):
            if stop.next_candle_ms < horizon_ms:
                needed[stop.symbol] = min(stop.next_candle_ms, needed.get(stop.symbol, stop.next_candle_ms))
        return needed

    def catch_up(self, state: SimAccountState, now_ms: int) -> None:
        if now_ms <= state.last_evaluated_ms:
            # evaluated up to now already (the engine asks twice a cycle); an order placed since rests from the
            # first candle opening at or after its placement, which has not closed by now
            return
        horizon_ms = now_ms // FIVE_MIN_MS * FIVE_MIN_MS  # candles opening before this have closed at now
        while (event := self._next_event(state, horizon_ms)) is not None:
            self._apply(state, event)
        for order in _watched_stops(state):
            known_ms = self._market.candles_known_until(order.symbol, order.next_candle_ms, horizon_ms)
            order.next_candle_ms = max(order.next_candle_ms, known_ms)
        state.last_evaluated_ms = now_ms  # later than before: the early return above

    def _next_event(self, state: SimAccountState, horizon_ms: int) -> _Event | None:
        events = (self._first_event(state, stop, horizon_ms) for stop in _watched_stops(state))
        found = [e for e in events if e is not None]
        return min(found, key=lambda e: (e.candle_open_ms, e.order_id)) if found else None

    def _first_event(self, state: SimAccountState, stop: SimOrder, horizon_ms: int) -> _Event | None:
        horizon_ms = self._market.candles_known_until(stop.symbol, stop.next_candle_ms, horizon_ms)
        if stop.next_candle_ms >= horizon_ms:
            return None
        arrays, first, end = self._market.candles.rows_between(stop.symbol, Timeframe.M5, stop.next_candle_ms, horizon_ms)
        take_profit = None if stop.triggered else _take_profit_leg(state, stop)
        # float comparisons only pre-select candles; the exact Decimal test below decides
        # a resting sell is reached from above (high >= its price); an executing list also from below (low <= stop)
        if take_profit is None:
            ceiling, floor = float(stop.price), -math.inf
        else:
            ceiling, floor = float(take_profit.price), float(stop.stop_price or ZERO)
        high, low = arrays.high[first:end], arrays.low[first:end]
        if end - first <= _SCALAR_ROWS:  # a cycle's one new candle: plain floats cost less than numpy calls
            pairs = enumerate(zip(high.tolist(), low.tolist(), strict=True))
            hits = [i for i, (h, lo) in pairs if lo <= floor or h >= ceiling]
        else:
            hits = np.flatnonzero((low <= floor) | (high >= ceiling)).tolist()
        for index in hits:
            open_ms = int(arrays.open_time_ms[first + index])
            candle = self._market.candles.candles_between(stop.symbol, Timeframe.M5, open_ms, open_ms + 1)[0]
            if _touches(candle, stop, take_profit):
                return _Event(open_ms, stop.order_id, candle)
        return None

    def _apply(self, state: SimAccountState, event: _Event) -> None:
        stop, candle = state.orders[event.order_id], event.candle
        close_ms = event.candle_open_ms + FIVE_MIN_MS
        stop.next_candle_ms = close_ms
        if stop.triggered:
            price = resting_sell_price(candle, stop.price)
        else:
            take_profit = _take_profit_leg(state, stop)
            if take_profit is not None and (price := _take_profit_fill(candle, stop, take_profit)) is not None:
                _finish_list(state, stop, expired=stop, at_ms=close_ms)
                self.fill_sell(state, take_profit, price, close_ms)
                return
            self._trigger_stop(state, stop, take_profit, close_ms)
            price = triggered_stop_price(candle, stop, self._market.slippage_pct, self._market.rules(stop.symbol))
        if price is not None:
            self.fill_sell(state, stop, price, close_ms)

    def _trigger_stop(self, state: SimAccountState, stop: SimOrder, take_profit: SimOrder | None, at_ms: int) -> None:
        stop.triggered = True
        stop.transact_ms = at_ms
        if take_profit is not None:
            _finish_list(state, stop, expired=take_profit, at_ms=at_ms)
        state.revision += 1

    def fill_sell(self, state: SimAccountState, order: SimOrder, price: Decimal, at_ms: int) -> None:
        """A resting sell executes in full: locked base leaves, quote minus the fee arrives."""
        rules = self._market.rules(order.symbol)
        quote = order.orig_qty * price
        fee = self._market.fee(quote)
        order.fills.append(Fill(price, order.orig_qty, fee, rules.quote_asset, state.next_trade_id))
        state.next_trade_id += 1
        order.status = OrderStatus.FILLED
        order.executed_qty = order.orig_qty
        order.cumulative_quote_qty = quote
        order.transact_ms = at_ms
        state.move(rules.base_asset, locked_delta=-order.orig_qty)
        state.move(rules.quote_asset, free_delta=quote - fee)


def _watched_stops(state: SimAccountState) -> list[SimOrder]:
    """Stop legs still resting: in an executing list, or triggered and waiting for their limit price."""
    return [o for o in open_orders(state) if o.type == OrderType.STOP_LOSS_LIMIT]


def _finish_list(state: SimAccountState, stop: SimOrder, expired: SimOrder, at_ms: int) -> None:
    """The OCO rule: the other leg expires; the list is done even while a triggered stop still rests."""
    expired.status = OrderStatus.EXPIRED
    expired.transact_ms = at_ms
    state.order_lists[stop.order_list_id].status = ListStatus.ALL_DONE
    state.revision += 1


def _take_profit_leg(state: SimAccountState, stop: SimOrder) -> SimOrder | None:
    order_list = state.order_lists.get(stop.order_list_id)
    if order_list is None or order_list.status != ListStatus.EXECUTING:
        return None
    return state.orders[order_list.take_profit_leg_id]


def _touches(candle: Candle, stop: SimOrder, take_profit: SimOrder | None) -> bool:
    if take_profit is None:
        return candle.high >= stop.price
    return candle.low <= (stop.stop_price or ZERO) or candle.high >= take_profit.price


# ---------------------------------------------------------------------------------------------------------------
# Fill prices. Every fill the matcher books lies inside the [low, high] of its candle: the 5m candle in which it
# filled, the one that closed at the fill's time (`transact_ms`). Inside a candle the data shows the open first,
# then only the range: an order the open already crosses fills at the open; one the price reaches later fills where
# it was reached. (Market orders are priced elsewhere: see OrderEntry.market_order.)


def resting_sell_price(candle: Candle, limit: Decimal) -> Decimal | None:
    """A sell limit resting on the book (a take-profit, or a triggered stop waiting for its limit): None while the
    candle stays below it (high < limit); its limit when the candle opens below and trades up to it; the open when
    the candle opens at or above it (a gap over it). On the exchange the gap would have filled it at its limit as the
    price passed through, but no trade printed there (the previous candle closed below, this one opened above), so
    the open, the nearest price the market printed, is booked instead; it is better by at most the gap."""
    return resting_limit_sell_price(candle.open, candle.high, limit)


def triggered_stop_price(candle: Candle, stop: SimOrder, slippage_pct: Decimal, rules: SymbolRules) -> Decimal | None:
    """A sell stop-limit its candle triggers (low <= stop price): the best price the candle offers at or above its
    limit (fill_rules.triggered_stop_limit_sell_price, the rule the backtest's edge test replays too), snapped down
    to the tick against the seller; None while it rests."""
    price = triggered_stop_limit_sell_price(candle.open, candle.high, candle.low, stop.stop_price or ZERO,
                                            stop.price, slippage_pct / Decimal(100))
    return None if price is None else rules.round_price_down(price)


def _take_profit_fill(candle: Candle, stop: SimOrder, take_profit: SimOrder) -> Decimal | None:
    """The take-profit's fill price when a candle fills it before the stop, else None. The stop comes first
    whenever the candle trades down to its trigger (the order of prices inside a candle is unknown: the worse case
    is taken), unless the candle opens at or above the take-profit, which then filled at once."""
    price = resting_sell_price(candle, take_profit.price)
    if price is None or (candle.low <= (stop.stop_price or ZERO) and candle.open < take_profit.price):
        return None
    return price
