"""Boundary models for Binance JSON and the one conversion per value from them into domain values."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel

from app.domain.clock import utc_from_ms
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
)
from app.marketdata.exchange_info import ExchangeFilter, ExchangeInfo, ExchangeSymbol, rules_from_symbol

# Binance has states our domain folds together: none of them changes what the bot must do.
_ORDER_STATUS = {
    "NEW": OrderStatus.NEW,
    "PENDING_NEW": OrderStatus.NEW,
    "PENDING_CANCEL": OrderStatus.NEW,
    "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELED,
    "REJECTED": OrderStatus.REJECTED,
    "EXPIRED": OrderStatus.EXPIRED,
    "EXPIRED_IN_MATCH": OrderStatus.EXPIRED,
}


class BinanceModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class BinanceErrorBody(BinanceModel):
    code: int
    msg: str = ""


class BinanceServerTime(BinanceModel):
    server_time: int


class BinanceTickerPrice(BinanceModel):
    symbol: str
    price: Decimal


class BinanceTicker24h(BinanceModel):
    """One entry of GET /api/v3/ticker/24hr (FULL or MINI)."""

    symbol: str
    quote_volume: Decimal


class BinanceFill(BinanceModel):
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    trade_id: int = 0


class BinanceTrade(BinanceModel):
    """One entry of GET /api/v3/myTrades."""

    id: int
    order_id: int
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    time: int = 0


class BinanceOrder(BinanceModel):
    """POST/GET/DELETE /api/v3/order answers and OCO `orderReports` entries."""

    symbol: str
    order_id: int
    order_list_id: int = -1
    client_order_id: str
    orig_client_order_id: str | None = None  # only on cancel answers, where clientOrderId is the cancel's id
    price: Decimal = ZERO
    orig_qty: Decimal
    executed_qty: Decimal = ZERO
    cummulative_quote_qty: Decimal = ZERO
    status: str
    type: str
    side: str
    stop_price: Decimal | None = None
    transact_time: int | None = None
    time: int | None = None
    fills: list[BinanceFill] = []


class BinanceOrderListEntry(BinanceModel):
    symbol: str
    order_id: int
    client_order_id: str


class BinanceOrderList(BinanceModel):
    order_list_id: int
    list_order_status: str
    list_client_order_id: str
    symbol: str
    transaction_time: int | None = None
    orders: list[BinanceOrderListEntry] = []
    order_reports: list[BinanceOrder] = []


# exchangeInfo has one parser for every venue (app.marketdata.exchange_info); these names are its models
BinanceFilter = ExchangeFilter
BinanceSymbol = ExchangeSymbol
BinanceExchangeInfo = ExchangeInfo


class BinanceBalance(BinanceModel):
    asset: str
    free: Decimal
    locked: Decimal = ZERO


class BinanceAccount(BinanceModel):
    balances: list[BinanceBalance] = []


class BinanceKline(BinanceModel):
    """One kline array `[openTime, open, high, low, close, volume, closeTime, ...]`."""

    open_time: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    close_time: int

    @model_validator(mode="before")
    @classmethod
    def _from_array(cls, data: Any) -> Any:
        if isinstance(data, list | tuple):
            names = ("open_time", "open", "high", "low", "close", "volume", "close_time")
            if len(data) < len(names):
                raise ValueError(f"kline has {len(data)} items, expected at least {len(names)}")
            return dict(zip(names, data, strict=False))
        return data


class BinanceRateLimit(BinanceModel):
    rate_limit_type: str
    interval: str
    interval_num: int
    limit: int


class BinanceRateLimits(BinanceModel):
    """exchangeInfo's `rateLimits`, read apart from its symbols."""

    rate_limits: list[BinanceRateLimit] = []

    def request_weight_per_minute(self) -> int | None:
        found = (r.limit for r in self.rate_limits
                 if (r.rate_limit_type, r.interval, r.interval_num) == ("REQUEST_WEIGHT", "MINUTE", 1))
        return next(found, None)


# ---------------------------------------------------------------- Binance -> domain


def fill_from_binance(fill: BinanceFill | BinanceTrade) -> Fill:
    trade_id = fill.id if isinstance(fill, BinanceTrade) else fill.trade_id
    return Fill(fill.price, fill.qty, fill.commission, fill.commission_asset, trade_id)


def order_from_binance(raw: BinanceOrder, trades: Sequence[BinanceTrade] = ()) -> Order:
    """Fills come from a FULL answer, or from myTrades when the order was queried."""
    time_ms = raw.transact_time if raw.transact_time is not None else raw.time
    fills = trades or raw.fills
    return Order(
        symbol=raw.symbol,
        order_id=raw.order_id,
        client_order_id=raw.orig_client_order_id or raw.client_order_id,
        side=Side(raw.side),
        type=OrderType(raw.type),
        status=_ORDER_STATUS[raw.status],
        orig_qty=raw.orig_qty,
        executed_qty=raw.executed_qty,
        cumulative_quote_qty=raw.cummulative_quote_qty,
        price=raw.price,
        stop_price=raw.stop_price if raw.stop_price else None,  # GET order sends "0" on non-stop orders
        fills=tuple(fill_from_binance(f) for f in fills),
        transact_time=utc_from_ms(time_ms) if time_ms is not None else None,
        order_list_id=raw.order_list_id,
    )


def oco_from_binance(raw: BinanceOrderList, legs: Sequence[Order] | None = None) -> OcoOrder:
    """`legs` comes from per-leg queries when the answer (GET orderList) carries no `orderReports`."""
    if legs is None:
        legs = [order_from_binance(r) for r in raw.order_reports]
    return OcoOrder(
        symbol=raw.symbol,
        order_list_id=raw.order_list_id,
        list_client_order_id=raw.list_client_order_id,
        list_status=ListStatus(raw.list_order_status),
        legs=tuple(legs),
        transaction_time=utc_from_ms(raw.transaction_time) if raw.transaction_time is not None else None,
    )


def symbol_rules_from_binance(raw: ExchangeSymbol) -> SymbolRules:
    return rules_from_symbol(raw)


def balance_from_binance(raw: BinanceBalance) -> Balance:
    return Balance(raw.asset, raw.free, raw.locked)


def candle_from_binance(raw: BinanceKline) -> Candle:
    return Candle(raw.open_time, raw.open, raw.high, raw.low, raw.close, raw.volume)
