"""The simulated Binance spot exchange: one account's balances and orders, filled from real candles at clock time."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_UP, Decimal
from typing import Any, Protocol, TypeVar

import numpy as np

from app.domain.clock import Clock, ms_from_utc, utc_from_ms
from app.domain.errors import ConfigurationError, InsufficientFunds, OrderNotFound, OrderRejected
from app.domain.values import (
    ZERO,
    Balance,
    Candle,
    Fill,
    ListStatus,
    OcoOrder,
    Order,
    OrderStatus,
    OrderType,
    Side,
    SymbolRules,
    Timeframe,
    oco_leg_client_ids,
)
from app.marketdata.candles import CandleStore
from app.venues.binance.protocol import MAX_KLINES

T = TypeVar("T")
FIVE_MIN_MS = Timeframe.M5.ms
COMMISSION_QUANTUM = Decimal("0.00000001")  # Binance's commission precision (8 decimals)
KEEP_FINISHED_ORDERS = 1000  # older final orders are dropped, as Binance archives old orders

FILTER_FAILURE = -1013
NEW_ORDER_REJECTED = -2010
CANCEL_REJECTED = -2011
NO_SUCH_ORDER = -2013
INSUFFICIENT_BALANCE = "Account has insufficient balance for requested action."


def _rules(symbol: str, base: str, tick: str, step: str, max_qty: str) -> SymbolRules:
    return SymbolRules(
        symbol=symbol,
        base_asset=base,
        quote_asset="USDT",
        tick_size=Decimal(tick),
        step_size=Decimal(step),
        min_qty=Decimal(step),
        max_qty=Decimal(max_qty),
        min_notional=Decimal("5"),
        min_price=Decimal(tick),
        max_price=Decimal("1000000"),
    )


def default_symbol_rules() -> dict[str, SymbolRules]:
    """Binance-like spot filters for the four bundled symbols."""
    return {
        "BTCUSDT": _rules("BTCUSDT", "BTC", "0.01", "0.00001", "9000"),
        "ETHUSDT": _rules("ETHUSDT", "ETH", "0.01", "0.0001", "9000"),
        "SOLUSDT": _rules("SOLUSDT", "SOL", "0.01", "0.001", "90000"),
        "BNBUSDT": _rules("BNBUSDT", "BNB", "0.01", "0.001", "90000"),
    }


class SimulatedMarket:
    """Shared, read-only market: prices at a time, symbol rules, slippage (percent) and the fee rate (fraction)."""

    def __init__(
        self,
        candles: CandleStore,
        rules: dict[str, SymbolRules] | None = None,
        slippage_pct: Decimal = Decimal("0"),
        fee_rate: Decimal = Decimal("0.001"),
    ) -> None:
        self.candles = candles
        self._rules = dict(rules) if rules is not None else default_symbol_rules()
        self.slippage_pct = Decimal(slippage_pct)
        self.fee_rate = Decimal(fee_rate)

    def rules(self, symbol: str) -> SymbolRules:
        found = self._rules.get(symbol)
        if found is None or not self.candles.has_symbol(symbol):
            raise ConfigurationError(
                f"Invalid symbol {symbol!r}: the simulated exchange has no rules or candles for it"
            )
        return found

    def last_price(self, symbol: str, now_ms: int) -> Decimal:
        self.rules(symbol)
        return self.candles.price_at(symbol, utc_from_ms(now_ms))

    def market_price(self, symbol: str, side: Side, now_ms: int) -> Decimal:
        """Last price moved against the taker by the slippage, then snapped to the tick (against the taker too)."""
        rules = self.rules(symbol)
        factor = self.slippage_pct / Decimal(100)
        if side == Side.BUY:
            return rules.round_price_up(self.last_price(symbol, now_ms) * (1 + factor))
        return rules.round_price_down(self.last_price(symbol, now_ms) * (1 - factor))

    def fee(self, amount: Decimal) -> Decimal:
        return (amount * self.fee_rate).quantize(COMMISSION_QUANTUM, rounding=ROUND_UP)


# ---------------------------------------------------------------------------------------------------------------
# Account state: plain mutable records with a JSON-able dict form (Decimals as strings) for persistence.


def _fill_to_dict(fill: Fill) -> dict[str, Any]:
    return {
        "price": str(fill.price),
        "qty": str(fill.qty),
        "commission": str(fill.commission),
        "commission_asset": fill.commission_asset,
        "trade_id": fill.trade_id,
    }


def _fill_from_dict(data: Mapping[str, Any]) -> Fill:
    return Fill(
        Decimal(data["price"]),
        Decimal(data["qty"]),
        Decimal(data["commission"]),
        data["commission_asset"],
        int(data["trade_id"]),
    )


@dataclass
class SimOrder:
    order_id: int
    client_order_id: str
    symbol: str
    side: Side
    type: OrderType
    status: OrderStatus
    orig_qty: Decimal
    price: Decimal = ZERO
    stop_price: Decimal | None = None
    executed_qty: Decimal = ZERO
    cumulative_quote_qty: Decimal = ZERO
    fills: list[Fill] = field(default_factory=list)
    order_list_id: int = -1
    transact_ms: int = 0
    triggered: bool = False  # a stop leg whose trigger was hit: now a resting sell limit
    next_candle_ms: int = 0  # open time of the first 5m candle not yet evaluated for this resting order

    def to_order(self) -> Order:
        return Order(
            symbol=self.symbol,
            order_id=self.order_id,
            client_order_id=self.client_order_id,
            side=self.side,
            type=self.type,
            status=self.status,
            orig_qty=self.orig_qty,
            executed_qty=self.executed_qty,
            cumulative_quote_qty=self.cumulative_quote_qty,
            price=self.price,
            stop_price=self.stop_price,
            fills=tuple(self.fills),
            transact_time=utc_from_ms(self.transact_ms),
            order_list_id=self.order_list_id,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "client_order_id": self.client_order_id,
            "symbol": self.symbol,
            "side": self.side.value,
            "type": self.type.value,
            "status": self.status.value,
            "orig_qty": str(self.orig_qty),
            "price": str(self.price),
            "stop_price": None if self.stop_price is None else str(self.stop_price),
            "executed_qty": str(self.executed_qty),
            "cumulative_quote_qty": str(self.cumulative_quote_qty),
            "fills": [_fill_to_dict(f) for f in self.fills],
            "order_list_id": self.order_list_id,
            "transact_ms": self.transact_ms,
            "triggered": self.triggered,
            "next_candle_ms": self.next_candle_ms,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SimOrder:
        stop = data.get("stop_price")
        return cls(
            order_id=int(data["order_id"]),
            client_order_id=data["client_order_id"],
            symbol=data["symbol"],
            side=Side(data["side"]),
            type=OrderType(data["type"]),
            status=OrderStatus(data["status"]),
            orig_qty=Decimal(data["orig_qty"]),
            price=Decimal(data["price"]),
            stop_price=None if stop is None else Decimal(stop),
            executed_qty=Decimal(data["executed_qty"]),
            cumulative_quote_qty=Decimal(data["cumulative_quote_qty"]),
            fills=[_fill_from_dict(f) for f in data["fills"]],
            order_list_id=int(data["order_list_id"]),
            transact_ms=int(data["transact_ms"]),
            triggered=bool(data["triggered"]),
            next_candle_ms=int(data["next_candle_ms"]),
        )


@dataclass
class SimOrderList:
    order_list_id: int
    list_client_order_id: str
    symbol: str
    status: ListStatus
    stop_leg_id: int
    take_profit_leg_id: int
    transaction_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "order_list_id": self.order_list_id,
            "list_client_order_id": self.list_client_order_id,
            "symbol": self.symbol,
            "status": self.status.value,
            "stop_leg_id": self.stop_leg_id,
            "take_profit_leg_id": self.take_profit_leg_id,
            "transaction_ms": self.transaction_ms,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SimOrderList:
        return cls(
            int(data["order_list_id"]),
            data["list_client_order_id"],
            data["symbol"],
            ListStatus(data["status"]),
            int(data["stop_leg_id"]),
            int(data["take_profit_leg_id"]),
            int(data["transaction_ms"]),
        )


@dataclass
class SimAccountState:
    """Everything one simulated account holds; `to_dict` / `from_dict` give a JSON-able form."""

    balances: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)  # asset -> (free, locked)
    orders: dict[int, SimOrder] = field(default_factory=dict)
    order_lists: dict[int, SimOrderList] = field(default_factory=dict)
    next_order_id: int = 1
    next_list_id: int = 1
    next_trade_id: int = 1
    last_evaluated_ms: int = 0
    revision: int = 0  # bumped on every change, so callers can skip saving an untouched state
    # orders not final yet, oldest first (a superset: final ones leave it when next read); not persisted
    open_orders: dict[int, SimOrder] = field(default_factory=dict, init=False, repr=False, compare=False)
    # answers about order lists, each with the revision it was built at (any change bumps it); not persisted
    list_answers: dict[int, tuple[int, OcoOrder]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.open_orders = {i: o for i, o in self.orders.items() if not o.status.is_final}

    def free(self, asset: str) -> Decimal:
        return self.balances.get(asset, (ZERO, ZERO))[0]

    def move(self, asset: str, free_delta: Decimal = ZERO, locked_delta: Decimal = ZERO) -> None:
        free, locked = self.balances.get(asset, (ZERO, ZERO))
        self.balances[asset] = (free + free_delta, locked + locked_delta)
        self.revision += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "balances": {asset: [str(free), str(locked)] for asset, (free, locked) in sorted(self.balances.items())},
            "orders": [order.to_dict() for _, order in sorted(self.orders.items())],
            "order_lists": [item.to_dict() for _, item in sorted(self.order_lists.items())],
            "next_order_id": self.next_order_id,
            "next_list_id": self.next_list_id,
            "next_trade_id": self.next_trade_id,
            "last_evaluated_ms": self.last_evaluated_ms,
            "revision": self.revision,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SimAccountState:
        orders = [SimOrder.from_dict(o) for o in data["orders"]]
        lists = [SimOrderList.from_dict(x) for x in data["order_lists"]]
        return cls(
            balances={asset: (Decimal(free), Decimal(locked)) for asset, (free, locked) in data["balances"].items()},
            orders={o.order_id: o for o in orders},
            order_lists={x.order_list_id: x for x in lists},
            next_order_id=int(data["next_order_id"]),
            next_list_id=int(data["next_list_id"]),
            next_trade_id=int(data["next_trade_id"]),
            last_evaluated_ms=int(data["last_evaluated_ms"]),
            revision=int(data.get("revision", 0)),
        )


class SimAccountStore(Protocol):
    """Where simulated accounts live between calls (memory here; a database table elsewhere, via the dict form)."""

    async def load(self, account_id: str) -> SimAccountState | None: ...

    async def save(self, account_id: str, state: SimAccountState) -> None: ...


class InMemorySimAccountStore:
    """Keeps the live state objects; fast for backtests, lost on restart."""

    def __init__(self) -> None:
        self._states: dict[str, SimAccountState] = {}

    async def load(self, account_id: str) -> SimAccountState | None:
        return self._states.get(account_id)

    async def save(self, account_id: str, state: SimAccountState) -> None:
        self._states[account_id] = state


# ---------------------------------------------------------------------------------------------------------------
# Matching: what happens to resting orders as 5m candles close.


@dataclass(frozen=True, slots=True)
class _Event:
    candle_open_ms: int
    order_id: int  # the stop leg's id: it identifies both an executing list and a triggered stop
    candle: Candle


_SCALAR_ROWS = 16


class _Matcher:
    """Evaluates resting OCO legs candle by candle, in time order, up to the last 5m candle closed at `now`."""

    def __init__(self, market: SimulatedMarket) -> None:
        self._market = market

    def catch_up(self, state: SimAccountState, now_ms: int) -> None:
        if now_ms <= state.last_evaluated_ms:
            # evaluated up to now already (the engine asks twice a cycle); an order placed since rests from the
            # first candle opening at or after its placement, which has not closed by now
            return
        horizon_ms = now_ms // FIVE_MIN_MS * FIVE_MIN_MS  # candles opening before this have closed at now
        while (event := self._next_event(state, horizon_ms)) is not None:
            self._apply(state, event)
        for order in _watched_stops(state):
            order.next_candle_ms = max(order.next_candle_ms, horizon_ms)
        state.last_evaluated_ms = now_ms  # later than before: the early return above

    def _next_event(self, state: SimAccountState, horizon_ms: int) -> _Event | None:
        events = (self._first_event(state, stop, horizon_ms) for stop in _watched_stops(state))
        found = [e for e in events if e is not None]
        return min(found, key=lambda e: (e.candle_open_ms, e.order_id)) if found else None

    def _first_event(self, state: SimAccountState, stop: SimOrder, horizon_ms: int) -> _Event | None:
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
        stop = state.orders[event.order_id]
        close_ms = event.candle_open_ms + FIVE_MIN_MS
        stop.next_candle_ms = close_ms
        if not stop.triggered:
            take_profit = _take_profit_leg(state, stop)
            if take_profit is not None and event.candle.low > (stop.stop_price or ZERO):
                self._finish_list(state, stop, take_profit, filled=take_profit, at_ms=close_ms)
                return
            self._trigger_stop(state, stop, take_profit, close_ms)
        if event.candle.high >= stop.price:
            self.fill_sell(state, stop, stop.price, close_ms)

    def _trigger_stop(self, state: SimAccountState, stop: SimOrder, take_profit: SimOrder | None, at_ms: int) -> None:
        stop.triggered = True
        stop.transact_ms = at_ms
        if take_profit is not None:
            self._finish_list(state, stop, take_profit, filled=None, at_ms=at_ms)
        state.revision += 1

    def _finish_list(
        self, state: SimAccountState, stop: SimOrder, take_profit: SimOrder, filled: SimOrder | None, at_ms: int
    ) -> None:
        """The OCO rule: the other leg expires; the list is done even while a triggered stop still rests."""
        expired = stop if filled is take_profit else take_profit
        expired.status = OrderStatus.EXPIRED
        expired.transact_ms = at_ms
        state.order_lists[stop.order_list_id].status = ListStatus.ALL_DONE
        if filled is not None:
            self.fill_sell(state, filled, filled.price, at_ms)
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


def _open_orders(state: SimAccountState) -> list[SimOrder]:
    """Orders not final yet, oldest first: a scan of the few open ones, not of the up to 1,000 kept final ones."""
    index = state.open_orders
    for order_id in [i for i, o in index.items() if o.status.is_final or state.orders.get(i) is not o]:
        del index[order_id]
    return list(index.values())


def _watched_stops(state: SimAccountState) -> list[SimOrder]:
    """Stop legs still resting: in an executing list, or triggered and waiting for their limit price."""
    return [o for o in _open_orders(state) if o.type == OrderType.STOP_LOSS_LIMIT]


def _open_lists(state: SimAccountState) -> list[SimOrderList]:
    """Lists with a leg still open, by id (an executing list's legs are both open until it ends)."""
    ids = sorted({o.order_list_id for o in _open_orders(state) if o.order_list_id in state.order_lists})
    return [state.order_lists[i] for i in ids]


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
    if any(o.client_order_id == client_order_id for o in _open_orders(state)):
        raise _reject("Duplicate order sent.", NEW_ORDER_REJECTED, detail)


def _check_unique_list_id(state: SimAccountState, list_client_order_id: str, detail: str) -> None:
    for order_list in _open_lists(state):
        if order_list.list_client_order_id == list_client_order_id and order_list.status == ListStatus.EXECUTING:
            raise _reject("Duplicate order sent.", NEW_ORDER_REJECTED, detail)
    for leg_id in oco_leg_client_ids(list_client_order_id):
        _check_unique_order_id(state, leg_id, detail)


@dataclass(frozen=True, slots=True)
class _MarketRequest:
    symbol: str
    side: Side
    quantity: Decimal
    client_order_id: str
    available_qty: Decimal | None = None


@dataclass(frozen=True, slots=True)
class _OcoRequest:
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
# The adapter.


class MockBinanceService:
    """`ExchangeAdapter` for one simulated account; depends only on `clock.now()`, so it runs at any speed."""

    def __init__(self, account_id: str, market: SimulatedMarket, store: SimAccountStore, clock: Clock) -> None:
        self._account_id = account_id
        self._market = market
        self._store = store
        self._clock = clock
        self._matcher = _Matcher(market)
        self._lock = asyncio.Lock()

    @classmethod
    async def open_account(
        cls,
        account_id: str,
        market: SimulatedMarket,
        store: SimAccountStore,
        clock: Clock,
        balances: Mapping[str, Decimal] | None = None,
    ) -> MockBinanceService:
        """The service for an account; `balances` fund it only if the store has never seen it (restarts keep state)."""
        service = cls(account_id, market, store, clock)
        if await store.load(account_id) is None:
            state = SimAccountState()
            for asset, amount in (balances or {}).items():
                state.move(asset, free_delta=Decimal(amount))
            await store.save(account_id, state)
        return service

    async def fund(self, asset: str, amount: Decimal) -> Balance:
        """Deposit (or, with a negative amount, withdraw) free balance: paper accounts only."""

        def deposit(state: SimAccountState, _now_ms: int) -> Balance:
            if state.free(asset) + amount < 0:
                raise InsufficientFunds(f"{INSUFFICIENT_BALANCE} (withdraw {-amount} {asset})", NEW_ORDER_REJECTED)
            state.move(asset, free_delta=Decimal(amount))
            return _balance(state, asset)

        return await self._transact(deposit)

    async def state_snapshot(self) -> dict[str, Any]:
        """The account in its dict form, brought up to date with the clock."""
        return await self._transact(lambda state, _now_ms: state.to_dict())

    # -- market data ------------------------------------------------------------------------------------------
    async def get_symbol_rules(self, symbol: str) -> SymbolRules:
        return self._market.rules(symbol)

    async def get_klines(self, symbol: str, timeframe: Timeframe, limit: int) -> Sequence[Candle]:
        market = self._market
        market.rules(symbol)
        return market.candles.closed_window(symbol, timeframe, self._clock.now(), max(1, min(MAX_KLINES, limit)))

    async def get_symbol_price(self, symbol: str) -> Decimal:
        return self._market.last_price(symbol, ms_from_utc(self._clock.now()))

    # -- account ----------------------------------------------------------------------------------------------
    async def get_balances(self) -> list[Balance]:
        def balances(state: SimAccountState, _now_ms: int) -> list[Balance]:
            return [_balance(state, a) for a in sorted(state.balances) if _balance(state, a).total != 0]

        return await self._transact(balances)

    async def get_account_balance(self, asset: str = "USDT") -> Balance:
        return await self._transact(lambda state, _now_ms: _balance(state, asset))

    # -- orders -----------------------------------------------------------------------------------------------
    async def place_market_order(
        self, symbol: str, side: Side, quantity: Decimal, client_order_id: str, *, available_qty: Decimal | None = None
    ) -> Order:
        """`available_qty` is the book's liquidity (None: unlimited); beyond it the order ends EXPIRED, part-filled."""
        request = _MarketRequest(symbol, Side(side), quantity, client_order_id, available_qty)
        return await self._transact(lambda state, now_ms: self._market_order(state, now_ms, request))

    async def place_oco_order(
        self,
        symbol: str,
        quantity: Decimal,
        take_profit: Decimal,
        stop_price: Decimal,
        stop_limit_price: Decimal,
        list_client_order_id: str,
    ) -> OcoOrder:
        request = _OcoRequest(symbol, quantity, take_profit, stop_price, stop_limit_price, list_client_order_id)
        return await self._transact(lambda state, now_ms: self._place_oco(state, now_ms, request))

    async def get_oco_order_status(self, symbol: str, list_client_order_id: str) -> OcoOrder:
        return await self._transact(lambda state, _now_ms: _oco(state, _find_list(state, symbol, list_client_order_id)))

    async def cancel_oco_order(self, symbol: str, list_client_order_id: str) -> OcoOrder:
        def cancel(state: SimAccountState, now_ms: int) -> OcoOrder:
            order_list = _find_list(state, symbol, list_client_order_id)
            self._cancel_list(state, order_list, now_ms)
            return _oco(state, order_list)

        return await self._transact(cancel)

    async def get_order(self, symbol: str, client_order_id: str) -> Order:
        return await self._transact(lambda state, _now_ms: _find_order(state, symbol, client_order_id).to_order())

    async def cancel_order(self, symbol: str, client_order_id: str) -> Order:
        return await self._transact(lambda state, now_ms: self._cancel_order(state, symbol, client_order_id, now_ms))

    async def list_orders(self) -> list[Order]:
        """Every order the account still keeps (open and recent final ones), oldest first."""
        return await self._transact(lambda state, _now_ms: [o.to_order() for _, o in sorted(state.orders.items())])

    async def list_order_lists(self) -> list[OcoOrder]:
        """Every order list the account still keeps, oldest first."""
        return await self._transact(
            lambda state, _now_ms: [_oco(state, x) for _, x in sorted(state.order_lists.items())]
        )

    async def get_open_oco_orders(self) -> list[OcoOrder]:
        def open_lists(state: SimAccountState, _now_ms: int) -> list[OcoOrder]:
            executing = [x for x in _open_lists(state) if x.status == ListStatus.EXECUTING]
            return [_oco(state, x) for x in executing]

        return await self._transact(open_lists)

    # -- internals --------------------------------------------------------------------------------------------
    async def _transact(self, action: Callable[[SimAccountState, int], T]) -> T:
        """Load, catch up with every candle closed since the last call, act, and save if anything changed."""
        async with self._lock:
            state = await self._store.load(self._account_id) or SimAccountState()
            revision = state.revision
            now_ms = ms_from_utc(self._clock.now())
            self._matcher.catch_up(state, now_ms)
            try:
                return action(state, now_ms)
            finally:
                if state.revision != revision:
                    _prune(state)
                    await self._store.save(self._account_id, state)

    def _market_order(self, state: SimAccountState, now_ms: int, request: _MarketRequest) -> Order:
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

    def _place_oco(self, state: SimAccountState, now_ms: int, request: _OcoRequest) -> OcoOrder:
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
        return _oco(state, state.order_lists[list_id])

    def _check_oco(self, state: SimAccountState, now_ms: int, rules: SymbolRules, request: _OcoRequest) -> None:
        detail = request.detail
        _check_quantity(rules, request.quantity, detail)
        for price in (request.take_profit, request.stop_price, request.stop_limit_price):
            _check_price(rules, price, detail)
        for price in (request.take_profit, request.stop_limit_price):
            _check_notional(rules, request.quantity, price, detail)
        _check_unique_list_id(state, request.list_client_order_id, detail)
        last = self._market.last_price(request.symbol, now_ms)
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

    def _cancel_list(self, state: SimAccountState, order_list: SimOrderList, now_ms: int) -> None:
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

    def _cancel_order(self, state: SimAccountState, symbol: str, client_order_id: str, now_ms: int) -> Order:
        order = _find_order(state, symbol, client_order_id)
        if order.status.is_final:
            raise _unknown_order(f"{client_order_id} is {order.status}")
        order_list = state.order_lists.get(order.order_list_id)
        if order_list is None:
            raise _unknown_order(f"{client_order_id} has no resting quantity")
        # cancelling one leg cancels the whole list, as on Binance
        self._cancel_list(state, order_list, now_ms)
        return order.to_order()


def _balance(state: SimAccountState, asset: str) -> Balance:
    free, locked = state.balances.get(asset, (ZERO, ZERO))
    return Balance(asset, free, locked)


def _newest_first(items: dict[int, T]) -> Iterator[T]:
    """Values by descending id without sorting: ids are handed out ascending and dicts keep insertion order
    (from_dict restores them sorted), so the newest match is found after a few steps instead of a full sort."""
    return reversed(items.values())


def _find_order(state: SimAccountState, symbol: str, client_order_id: str) -> SimOrder:
    """The newest order with this client id (an id may be reused once the earlier order is final)."""
    for order in _newest_first(state.orders):
        if order.client_order_id == client_order_id and order.symbol == symbol:
            return order
    raise OrderNotFound(f"Order does not exist. ({symbol} {client_order_id})", NO_SUCH_ORDER)


def _find_list(state: SimAccountState, symbol: str, list_client_order_id: str) -> SimOrderList:
    for order_list in _newest_first(state.order_lists):
        if order_list.list_client_order_id == list_client_order_id and order_list.symbol == symbol:
            return order_list
    raise OrderNotFound(f"Order list does not exist. ({symbol} {list_client_order_id})", NO_SUCH_ORDER)


def _oco(state: SimAccountState, order_list: SimOrderList) -> OcoOrder:
    """The list as the exchange reports it; the same answer object while the account has not changed (the engine
    asks about every protected position each cycle, and most cycles change nothing)."""
    cached = state.list_answers.get(order_list.order_list_id)
    if cached is not None and cached[0] == state.revision:
        return cached[1]
    legs = tuple(state.orders[i].to_order() for i in (order_list.stop_leg_id, order_list.take_profit_leg_id))
    answer = OcoOrder(
        order_list.symbol,
        order_list.order_list_id,
        order_list.list_client_order_id,
        order_list.status,
        legs,
        utc_from_ms(order_list.transaction_ms),
    )
    if len(state.list_answers) >= 256:
        state.list_answers.clear()  # lists pruned from the account would otherwise stay here
    state.list_answers[order_list.order_list_id] = (state.revision, answer)
    return answer


def _prune(state: SimAccountState) -> None:
    """Drop the oldest finished orders (and their finished lists) beyond the cap, so paper accounts stay small.

    An order is finished when it and every leg of its list are final; orders are kept in ascending id order.
    """
    if len(state.orders) <= KEEP_FINISHED_ORDERS:
        return
    unfinished = _unfinished_ids(state)
    excess = len(state.orders) - len(unfinished) - KEEP_FINISHED_ORDERS
    if excess <= 0:
        return
    oldest = list(_ids_outside(state.orders, unfinished, excess))
    for order in oldest:
        state.orders.pop(order.order_id, None)
        state.order_lists.pop(order.order_list_id, None)


def _unfinished_ids(state: SimAccountState) -> set[int]:
    """Open orders and every kept leg of a list that still has an open leg."""
    ids = set()
    for order in _open_orders(state):
        ids.add(order.order_id)
        order_list = state.order_lists.get(order.order_list_id)
        if order_list is not None:
            ids.update(i for i in (order_list.stop_leg_id, order_list.take_profit_leg_id) if i in state.orders)
    return ids


def _ids_outside(orders: dict[int, SimOrder], skip: set[int], count: int) -> Iterator[SimOrder]:
    """The first `count` orders (oldest first) whose id is not in `skip`."""
    for order_id, order in orders.items():
        if count <= 0:
            return
        if order_id not in skip:
            count -= 1
            yield order
