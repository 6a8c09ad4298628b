"""The chaos suite's invariants: the exchange's own view (its signed REST endpoints) against the bot's books.

Checked on a still picture only (the bot held between cycles, no candle closing on the venue), so anything that
differs is a violation, never a race. What each invariant means:

- duplicate-client-id: two exchange orders (or order lists) share a client id.
- fill-without-trade: an order that executed (entry BUY, exit SELL, OCO leg) has no trade in the books.
- exit-not-booked: a SELL that executed for a trade the books still hold open (or whose sold part is unrecorded).
- trade-without-fill: a trade whose entry is not a filled BUY on the exchange, or with another quantity.
- unprotected: an open position without a live OCO of its size on the exchange, and not being closed.
- orphan-protection: a live OCO on the exchange that protects no open position.
- quote-balance: the exchange's USDT differs from start + realised P&L - cost of open trades + net proceeds of exits
  already executed for open trades - what the books charged for the remainders they carry.
- base-balance: the exchange's base asset differs from the open positions' amounts + the carried dust.
- closed-with-coins: a trade marked closed although less than what it bought was ever sold.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from app.domain.records import OrderRecord, PositionRecord, Remainder, TradeRecord
from app.domain.values import ZERO, OcoOrder, Order, OrderStatus, Side, SymbolRules, TradeStatus
from app.venues.binance.models import (
    BinanceAccount,
    BinanceExchangeInfo,
    BinanceOrder,
    BinanceOrderList,
    BinanceServerTime,
    BinanceTrade,
    oco_from_binance,
    order_from_binance,
    symbol_rules_from_binance,
)
from app.venues.binance.protocol import API_KEY_HEADER, signed_query
from tests.chaos.traffic import CHECKER_HEADER

QUOTE = "USDT"
_PAGE = 1000
_TRADE_SUFFIX = re.compile(r"-(x|p\d+)$")


class ExchangeViewError(RuntimeError):
    """The harness could not read the exchange: a harness failure, not a finding about the bot."""


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: str
    user_id: int
    subject: str
    detail: str

    @property
    def key(self) -> tuple[str, int, str]:
        return self.invariant, self.user_id, self.subject

    def __str__(self) -> str:
        return f"[{self.invariant}] user {self.user_id}, {self.subject}: {self.detail}"


# ---------------------------------------------------------------------------------------------------------------
# The exchange, through its signed REST endpoints


@dataclass(frozen=True, slots=True)
class ExchangeSnapshot:
    orders: tuple[Order, ...]  # every order seen with a fill, and the legs of the open lists
    open_lists: tuple[OcoOrder, ...]
    balances: dict[str, Decimal]  # free + locked
    list_ids: dict[int, str]  # orderListId -> listClientOrderId
    rules: dict[str, SymbolRules]


class ExchangeView:
    """One account as the exchange reports it. Fills and final orders are kept between snapshots, so an order the
    exchange has since archived (it keeps the newest 1,000) is still judged."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, api_key: str, api_secret: str) -> None:
        self._http, self._base_url = http, base_url.rstrip("/")
        self._key, self._secret = api_key, api_secret
        self._timestamp_ms = 0
        self._orders: dict[int, Order] = {}
        self._fills: dict[int, list[BinanceTrade]] = defaultdict(list)
        self._next_fill_id: dict[str, int] = {}
        self._list_ids: dict[int, str] = {}
        self._rules: dict[str, SymbolRules] = {}

    async def snapshot(self, symbols: Iterable[str]) -> ExchangeSnapshot:
        self._timestamp_ms = BinanceServerTime.model_validate(await self._get("/api/v3/time", signed=False)).server_time
        account = BinanceAccount.model_validate(await self._get("/api/v3/account", ()))
        balances = {b.asset: b.free + b.locked for b in account.balances}
        for symbol in symbols:
            await self._load_rules(symbol)
            await self._load_fills(symbol)
        open_lists = await self._open_lists()
        for order in list(self._orders.values()):
            if order.order_list_id >= 0 and order.order_list_id not in self._list_ids:
                await self._load_list_id(order.symbol, order.order_list_id)
        return ExchangeSnapshot(tuple(self._orders.values()), tuple(open_lists), balances, dict(self._list_ids),
                                dict(self._rules))

    async def _load_rules(self, symbol: str) -> None:
        if symbol not in self._rules:
            info = BinanceExchangeInfo.model_validate(
                await self._get("/api/v3/exchangeInfo", (("symbol", symbol),), signed=False))
            self._rules[symbol] = symbol_rules_from_binance(info.symbols[0])

    async def _load_fills(self, symbol: str) -> None:
        """New fills since the last snapshot (trade ids only grow), then the orders they belong to."""
        touched: set[int] = set()
        while True:
            params = (("symbol", symbol), ("fromId", str(self._next_fill_id.get(symbol, 0))), ("limit", str(_PAGE)))
            page = [BinanceTrade.model_validate(t) for t in await self._get("/api/v3/myTrades", params)]
            for fill in page:
                self._fills[fill.order_id].append(fill)
                touched.add(fill.order_id)
                self._next_fill_id[symbol] = fill.id + 1
            if len(page) < _PAGE:
                break
        for order_id in sorted(touched):
            await self._load_order(symbol, order_id)

    async def _load_order(self, symbol: str, order_id: int) -> Order:
        raw = BinanceOrder.model_validate(await self._get("/api/v3/order", (("symbol", symbol),
                                                                             ("orderId", str(order_id)))))
        order = order_from_binance(raw, self._fills.get(order_id, ()))
        self._orders[order_id] = order
        return order

    async def _open_lists(self) -> list[OcoOrder]:
        lists = []
        for item in await self._get("/api/v3/openOrderList", ()):
            raw = BinanceOrderList.model_validate(item)
            self._list_ids[raw.order_list_id] = raw.list_client_order_id
            legs = [await self._load_order(leg.symbol, leg.order_id) for leg in raw.orders]
            lists.append(oco_from_binance(raw, legs))
        return lists

    async def _load_list_id(self, symbol: str, order_list_id: int) -> None:
        raw = BinanceOrderList.model_validate(
            await self._get("/api/v3/orderList", (("symbol", symbol), ("orderListId", str(order_list_id)))))
        self._list_ids[order_list_id] = raw.list_client_order_id

    async def _get(self, path: str, params: Sequence[tuple[str, str]] = (), signed: bool = True) -> Any:
        headers = {CHECKER_HEADER: "1"}
        if signed:
            query = signed_query([*params, ("recvWindow", "60000"), ("timestamp", str(self._timestamp_ms))],
                                 self._secret)
            headers[API_KEY_HEADER] = self._key
        else:
            query = "&".join(f"{k}={v}" for k, v in params)
        answer = await self._http.get(f"{self._base_url}{path}?{query}", headers=headers)
        if answer.status_code != 200:
            raise ExchangeViewError(f"the harness could not read {path} {dict(params)}: "
                                    f"{answer.status_code} {answer.text[:200]}")
        return answer.json()


# ---------------------------------------------------------------------------------------------------------------
# The books, through the app's repositories


@dataclass
class Books:
    user_id: int
    start_balance: Decimal
    trades: list[TradeRecord]
    positions: list[PositionRecord]
    dust: dict[str, Remainder]
    rows: dict[str, OrderRecord]  # order rows by client id (orders and order lists)
    exits: dict[int, list[OrderRecord]]  # exit order rows of the open trades
    closing: dict[int, str]  # trade id -> closing_reason of positions being closed
    by_id: dict[int, TradeRecord] = field(init=False)
    by_entry: dict[str, TradeRecord] = field(init=False)

    def __post_init__(self) -> None:
        self.by_id = {t.id: t for t in self.trades}
        self.by_entry = {t.entry_client_order_id: t for t in self.trades}

    def open_trades(self) -> list[TradeRecord]:
        return [t for t in self.trades if t.status != TradeStatus.CLOSED]


async def read_books(uow_factory: Callable[[], Any], user_id: int, symbols: Iterable[str],
                     client_ids: Iterable[str]) -> Books:
    async with uow_factory() as uow:
        trades, _ = await uow.trades.page(user_id, limit=1_000_000)
        positions = await uow.positions.for_user(user_id)
        start = (await uow.portfolios.get(user_id)).start_balance
        dust = {s: await uow.dust.get(user_id, s) for s in symbols}
        rows = {cid: row for cid in set(client_ids) if (row := await uow.orders.get(cid)) is not None}
        exits = {t.id: await uow.orders.for_trade(t.id, "exit") for t in trades if t.status != TradeStatus.CLOSED}
        closing = await _closing_reasons(uow, positions)
    return Books(user_id, start, trades, positions, dust, rows, exits, closing)


async def _closing_reasons(uow: Any, positions: Sequence[PositionRecord]) -> dict[int, str]:
    """Positions whose exit has started (`closing_reason`): the bot finishes them, they need no protection."""
    return {p.trade_id: p.closing_reason.value for p in positions if p.closing_reason is not None}


# ---------------------------------------------------------------------------------------------------------------
# The invariants


@dataclass(frozen=True, slots=True)
class Picture:
    """One user's still picture: the exchange's view and the books, with sells attributed to their trades."""

    exchange: ExchangeSnapshot
    books: Books

    def base_asset(self, symbol: str) -> str:
        return self.exchange.rules[symbol].base_asset

    def owner(self, order: Order) -> TradeRecord | None:
        """The trade an exchange order belongs to: through its order row, else through its client id."""
        key = self.exchange.list_ids.get(order.order_list_id) if order.order_list_id >= 0 else order.client_order_id
        if key is None:
            return None
        if order.side is Side.BUY:
            return self.books.by_entry.get(key)
        row = self.books.rows.get(key)
        if row is not None and row.trade_id is not None and row.trade_id in self.books.by_id:
            return self.books.by_id[row.trade_id]
        return self.books.by_entry.get(_TRADE_SUFFIX.sub("", key))

    def filled(self) -> list[Order]:
        return [o for o in self.exchange.orders if o.executed_qty > 0]

    def sells_by_trade(self) -> dict[int, list[Order]]:
        sells: dict[int, list[Order]] = defaultdict(list)
        for order in self.filled():
            trade = self.owner(order) if order.side is Side.SELL else None
            if trade is not None:
                sells[trade.id].append(order)
        return sells

    def entry(self, trade: TradeRecord) -> Order | None:
        return next((o for o in self.filled() if o.side is Side.BUY and o.client_order_id == trade.entry_client_order_id),
                    None)


def describe(order: Order) -> str:
    when = order.transact_time.strftime("%Y-%m-%dT%H:%M") if order.transact_time else "?"
    return (f"{order.side.value} {order.type.value} {order.client_order_id} (order {order.order_id}, "
            f"{order.status.value} {order.executed_qty}/{order.orig_qty} @ {order.avg_price:.8g}, {when})")


def duplicate_client_ids(p: Picture) -> list[Violation]:
    by_client: dict[str, list[Order]] = defaultdict(list)
    for order in p.exchange.orders:
        by_client[order.client_order_id].append(order)
    found = [Violation("duplicate-client-id", p.books.user_id, cid, "; ".join(describe(o) for o in orders))
             for cid, orders in by_client.items() if len(orders) > 1]
    lists: dict[str, list[int]] = defaultdict(list)
    for list_id, cid in p.exchange.list_ids.items():
        lists[cid].append(list_id)
    found += [Violation("duplicate-client-id", p.books.user_id, cid, f"order lists {ids}")
              for cid, ids in lists.items() if len(ids) > 1]
    return found


def fills_booked(p: Picture) -> list[Violation]:
    found = []
    user = p.books.user_id
    for order in p.filled():
        trade = p.owner(order)
        if trade is None:
            found.append(Violation("fill-without-trade", user, order.client_order_id,
                                   f"{describe(order)} has no trade in the books"))
        elif order.side is Side.SELL:
            found += _sell_booked(p, order, trade)
    return found


def _sell_booked(p: Picture, order: Order, trade: TradeRecord) -> list[Violation]:
    user = p.books.user_id
    if trade.status != TradeStatus.CLOSED and order.status is OrderStatus.FILLED:
        return [Violation("exit-not-booked", user, order.client_order_id,
                          f"{describe(order)} sold trade {trade.id}'s coins, but the books hold the trade open")]
    row = p.books.rows.get(order.client_order_id)
    if trade.status != TradeStatus.CLOSED and row is not None and row.executed_qty != order.executed_qty:
        return [Violation("exit-not-booked", user, order.client_order_id,
                          f"{describe(order)} of open trade {trade.id}: its order row records {row.executed_qty} sold")]
    return []


def trades_filled(p: Picture) -> list[Violation]:
    found = []
    for trade in p.books.trades:
        entry = p.entry(trade)
        if entry is None:
            found.append(Violation("trade-without-fill", p.books.user_id, f"trade {trade.id}",
                                   f"entry {trade.entry_client_order_id} is not a filled BUY on the exchange"))
        elif entry.executed_qty != trade.amount:
            found.append(Violation("trade-without-fill", p.books.user_id, f"trade {trade.id}",
                                   f"books say {trade.amount} bought, the exchange executed {describe(entry)}"))
    return found


def protection(p: Picture) -> list[Violation]:
    user = p.books.user_id
    live = {oco.list_client_order_id: oco for oco in p.exchange.open_lists}
    found = []
    for position in p.books.positions:
        if position.trade_id in p.books.closing:
            continue
        subject = f"trade {position.trade_id}"
        what = f"position {position.amount} {position.symbol} opened {position.opened_at:%Y-%m-%dT%H:%M}"
        oco = live.get(position.oco_order_id) if position.oco_order_id else None
        if position.oco_order_id is None:
            found.append(Violation("unprotected", user, subject, f"{what} has no OCO and is not being closed"))
        elif oco is None:
            found.append(Violation("unprotected", user, subject,
                                   f"{what}: its OCO {position.oco_order_id} is not live on the exchange"))
        elif oco.stop_loss_leg.orig_qty != position.amount:
            found.append(Violation("unprotected", user, subject,
                                   f"{what}: its OCO {oco.list_client_order_id} covers {oco.stop_loss_leg.orig_qty}"))
    protected = {p_.oco_order_id for p_ in p.books.positions}
    for cid, oco in live.items():
        if cid not in protected:
            found.append(Violation("orphan-protection", user, cid,
                                   f"live OCO on {oco.stop_loss_leg.orig_qty} {oco.symbol} protects no open position"))
    return found


def quote_balance(p: Picture) -> list[Violation]:
    books = p.books
    realised = sum((t.profit_loss or ZERO for t in books.trades if t.status == TradeStatus.CLOSED), ZERO)
    open_cost = sum((t.amount * t.price for t in books.open_trades()), ZERO)
    partial = sum((_net_proceeds(row) for rows in books.exits.values() for row in rows), ZERO)
    carried = sum((r.cost for r in books.dust.values()), ZERO)  # what the books charged for carried remainders
    expected = books.start_balance + realised - open_cost + partial - carried
    held = p.exchange.balances.get(QUOTE, ZERO)
    if held == expected:
        return []
    return [Violation("quote-balance", books.user_id, QUOTE,
                      f"the exchange holds {held}, the books say {expected} (start {books.start_balance} + realised "
                      f"{realised} - open cost {open_cost} + executed exits of open trades {partial} - carried "
                      f"remainders' cost {carried}); "
                      f"difference {held - expected}")]


def _net_proceeds(row: OrderRecord) -> Decimal:
    fee = row.commission if row.commission_asset == QUOTE else ZERO
    return row.cumulative_quote_qty - fee if row.executed_qty > 0 else ZERO


def base_balances(p: Picture) -> list[Violation]:
    found = []
    for symbol in p.exchange.rules:
        asset = p.base_asset(symbol)
        positions = [x for x in p.books.positions if x.symbol == symbol]
        # a position being closed keeps its amount; what its exits already sold is on their order rows
        sold = sum((row.executed_qty for x in positions for row in p.books.exits.get(x.trade_id, ())), ZERO)
        in_positions = sum((x.amount for x in positions), ZERO) - sold
        dust = p.books.dust.get(symbol, Remainder()).amount
        held = p.exchange.balances.get(asset, ZERO)
        if held != in_positions + dust:
            trades = ", ".join(f"trade {x.trade_id}: {x.amount}" for x in positions) or "none"
            found.append(Violation("base-balance", p.books.user_id, asset,
                                   f"the exchange holds {held}, the books say {in_positions + dust} (open positions "
                                   f"{in_positions} [{trades}] + dust {dust}); difference {held - in_positions - dust}"))
    return found


def closed_trades_sold(p: Picture) -> list[Violation]:
    found = []
    sells = p.sells_by_trade()
    for trade in p.books.trades:
        entry = p.entry(trade)
        if trade.status != TradeStatus.CLOSED or entry is None:
            continue
        rules = p.exchange.rules[trade.symbol]
        held = entry.executed_qty - entry.commission_in(rules.base_asset)
        sold = sum((o.executed_qty for o in sells.get(trade.id, [])), ZERO)
        left = rules.round_qty(held - sold)
        # what the exchange would not take (under the minimum quantity, or the minimum notional at the exit price)
        # cannot be sold by anyone: the books carry it as dust (base_balances checks that) and the next exit sells it
        unsellable = left < rules.min_qty or (trade.exit_price or ZERO) * left < rules.min_notional
        if sold <= held - rules.step_size and not unsellable:
            found.append(Violation("closed-with-coins", p.books.user_id, f"trade {trade.id}",
                                   f"closed as {trade.exit_reason} at {trade.exit_price}, but only {sold} of the "
                                   f"{held} {rules.base_asset} it received was sold: {held - sold} remain unbooked"))
    return found


CHECKS = (duplicate_client_ids, fills_booked, trades_filled, protection, quote_balance, base_balances,
          closed_trades_sold)


def check_picture(picture: Picture) -> list[Violation]:
    return [v for check in CHECKS for v in check(picture)]


@dataclass
class Account:
    """A user the harness watches: their keys on the exchange and the symbols they trade."""

    user_id: int
    api_key: str
    api_secret: str
    symbols: tuple[str, ...]


class InvariantChecker:
    """Takes one still picture per user and lists every violation in it."""

    def __init__(self, base_url: str, uow_factory: Callable[[], Any], accounts: Sequence[Account]) -> None:
        self._http = httpx.AsyncClient(timeout=30.0)
        self._uow = uow_factory
        self._accounts = [(a, ExchangeView(self._http, base_url, a.api_key, a.api_secret)) for a in accounts]

    async def check(self) -> list[Violation]:
        violations = []
        for account, view in self._accounts:
            exchange = await view.snapshot(account.symbols)
            client_ids = [o.client_order_id for o in exchange.orders] + list(exchange.list_ids.values())
            books = await read_books(self._uow, account.user_id, account.symbols, client_ids)
            violations += check_picture(Picture(exchange, books))
        return violations

    async def aclose(self) -> None:
        await self._http.aclose()
