"""Paper accounts: balances, orders and order lists as plain records, their stores and dict form, and reads on them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from app.domain.clock import utc_from_ms
from app.domain.values import (
    ZERO,
    Balance,
    Fill,
    ListStatus,
    OcoOrder,
    Order,
    OrderStatus,
    OrderType,
    Side,
)

KEEP_FINISHED_ORDERS = 1000  # older final orders are dropped, as Binance archives old orders

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

    def forget(self, account_id: str) -> None:
        """Drop any state kept for the account, so that the next load reads it as saved."""
        ...


class InMemorySimAccountStore:
    """Keeps the live state objects; fast for backtests, lost on restart."""

    def __init__(self) -> None:
        self._states: dict[str, SimAccountState] = {}

    async def load(self, account_id: str) -> SimAccountState | None:
        return self._states.get(account_id)

    async def save(self, account_id: str, state: SimAccountState) -> None:
        self._states[account_id] = state

    def forget(self, account_id: str) -> None:
        """Nothing: the live objects are the only copy there is (dropping one would lose the account)."""


# ---------------------------------------------------------------------------------------------------------------
# Reading an account: balances, open orders and lists, answers about lists, and pruning.


def asset_balance(state: SimAccountState, asset: str) -> Balance:
    free, locked = state.balances.get(asset, (ZERO, ZERO))
    return Balance(asset, free, locked)


def open_orders(state: SimAccountState) -> list[SimOrder]:
    """Orders not final yet, oldest first: a scan of the few open ones, not of the up to 1,000 kept final ones."""
    index = state.open_orders
    for order_id in [i for i, o in index.items() if o.status.is_final or state.orders.get(i) is not o]:
        del index[order_id]
    return list(index.values())


def open_lists(state: SimAccountState) -> list[SimOrderList]:
    """Lists with a leg still open, by id (an executing list's legs are both open until it ends)."""
    ids = sorted({o.order_list_id for o in open_orders(state) if o.order_list_id in state.order_lists})
    return [state.order_lists[i] for i in ids]


def oco_answer(state: SimAccountState, order_list: SimOrderList) -> OcoOrder:
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


def prune_finished(state: SimAccountState) -> None:
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
    for order in open_orders(state):
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
