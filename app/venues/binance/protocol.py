"""Binance spot REST wire facts shared by the client and the simulator: signing, error codes, weights, JSON shapes."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from enum import StrEnum
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode

from app.domain.clock import ms_from_utc
from app.domain.values import (
    Balance,
    Candle,
    Fill,
    ListStatus,
    OcoOrder,
    Order,
    OrderStatus,
    OrderType,
    SymbolRules,
    format_decimal,
)

PRODUCTION_BASE_URL = "https://api.binance.com"
TESTNET_BASE_URL = "https://testnet.binance.vision"
API_KEY_HEADER = "X-MBX-APIKEY"
USED_WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
RETRY_AFTER_HEADER = "Retry-After"
DEFAULT_RECV_WINDOW_MS = 5000
MAX_RECV_WINDOW_MS = 60000
MAX_KLINES = 1000  # the most klines one request returns
MINUTE_MS = 60_000  # request weight is counted per minute
MAX_AHEAD_MS = 1000  # a timestamp this far ahead of the server clock is refused


class Endpoint(StrEnum):
    PING = "/api/v3/ping"
    TIME = "/api/v3/time"
    EXCHANGE_INFO = "/api/v3/exchangeInfo"
    KLINES = "/api/v3/klines"
    TICKER_PRICE = "/api/v3/ticker/price"
    TICKER_24HR = "/api/v3/ticker/24hr"
    ACCOUNT = "/api/v3/account"
    ORDER = "/api/v3/order"
    OPEN_ORDERS = "/api/v3/openOrders"
    MY_TRADES = "/api/v3/myTrades"
    ORDER_LIST_OCO = "/api/v3/orderList/oco"
    ORDER_LIST = "/api/v3/orderList"
    OPEN_ORDER_LIST = "/api/v3/openOrderList"


# (method, path) -> request weight; failed order placements cost 1, successful ones 0 (reference section 4).
ENDPOINT_WEIGHTS: Mapping[tuple[str, str], int] = {
    ("GET", Endpoint.PING): 1,
    ("GET", Endpoint.TIME): 1,
    ("GET", Endpoint.EXCHANGE_INFO): 20,
    ("GET", Endpoint.KLINES): 2,
    ("GET", Endpoint.TICKER_PRICE): 2,
    ("GET", Endpoint.TICKER_24HR): 80,  # every symbol; endpoint_weight counts a request's symbols
    ("GET", Endpoint.ACCOUNT): 20,
    ("POST", Endpoint.ORDER): 1,
    ("GET", Endpoint.ORDER): 4,
    ("DELETE", Endpoint.ORDER): 1,
    ("GET", Endpoint.OPEN_ORDERS): 6,
    ("GET", Endpoint.MY_TRADES): 5,
    ("POST", Endpoint.ORDER_LIST_OCO): 1,
    ("GET", Endpoint.ORDER_LIST): 4,
    ("DELETE", Endpoint.ORDER_LIST): 1,
    ("GET", Endpoint.OPEN_ORDER_LIST): 6,
}
SIGNED_ENDPOINTS = frozenset(
    {Endpoint.ACCOUNT, Endpoint.ORDER, Endpoint.OPEN_ORDERS, Endpoint.MY_TRADES, Endpoint.ORDER_LIST_OCO,
     Endpoint.ORDER_LIST, Endpoint.OPEN_ORDER_LIST}
)


def endpoint_weight(method: str, path: str, params: Mapping[str, str] | None = None) -> int:
    """A request's weight; the tickers' depends on how many symbols they answer for (reference section 4)."""
    if params is not None and method.upper() == "GET":
        if path == Endpoint.TICKER_PRICE:
            return 2 if "symbol" in params else 4
        if path == Endpoint.TICKER_24HR:
            return _ticker_24hr_weight(params)
    return ENDPOINT_WEIGHTS.get((method.upper(), path), 1)


def _ticker_24hr_weight(params: Mapping[str, str]) -> int:
    """2 for one symbol or up to 20, 40 for 21-100, 80 for more or for every symbol."""
    if "symbol" in params:
        return 2
    if "symbols" not in params:
        return 80
    count = params["symbols"].count(",") + 1  # a JSON array of names, which hold no commas
    return 2 if count <= 20 else 40 if count <= 100 else 80


# ---------------------------------------------------------------- signing


def sign(payload: str, secret: str) -> str:
    """hex(HMAC-SHA256(secret, payload)), payload = raw query string followed by the raw body."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def encode_params(params: Iterable[tuple[str, str]]) -> str:
    """`name=value&...` in the given order, percent-encoded (the exact text that gets signed)."""
    return urlencode(list(params))


def signed_query(params: Iterable[tuple[str, str]], secret: str) -> str:
    """The query string with `signature` appended last, as the server expects to verify it."""
    query = encode_params(params)
    return f"{query}&signature={sign(query, secret)}"


def _split_signature(raw: str) -> tuple[str, str | None]:
    pairs = raw.split("&") if raw else []
    kept = [p for p in pairs if not p.startswith("signature=")]
    found = [p.partition("=")[2] for p in pairs if p.startswith("signature=")]
    return "&".join(kept), (found[0] if found else None)


def verify_signature(query: str, body: str, secret: str) -> bool:
    """Server side: drop the `signature` pair, sign raw query + raw body, compare case-insensitively."""
    query_rest, in_query = _split_signature(query)
    body_rest, in_body = _split_signature(body)
    given = in_query or in_body
    if not given:
        return False
    expected = sign(query_rest + body_rest, secret)
    return hmac.compare_digest(expected, given.lower())


def parse_params(query: str, body: str = "") -> dict[str, str]:
    """Request parameters; a name present in both the query and the body takes the query's value."""
    params = dict(parse_qsl(body, keep_blank_values=True))
    params.update(parse_qsl(query, keep_blank_values=True))
    return params


def timestamp_error(timestamp_ms: int, server_time_ms: int, recv_window_ms: int) -> str | None:
    """The server's -1021 check: the message to send, or None when the timestamp is acceptable."""
    if timestamp_ms >= server_time_ms + MAX_AHEAD_MS:
        return "Timestamp for this request was 1000ms ahead of the server's time."
    if server_time_ms - timestamp_ms > recv_window_ms:
        return "Timestamp for this request is outside of the recvWindow."
    return None


# ---------------------------------------------------------------- errors


class ErrorSpec(NamedTuple):
    http_status: int
    name: str
    message: str


# Statuses of -1000/-1006/-1007 are not documented; 5xx is our (sim) choice because their outcome is unknown.
ERROR_CODES: Mapping[int, ErrorSpec] = {
    -1000: ErrorSpec(500, "UNKNOWN", "An unknown error occurred while processing the request."),
    -1003: ErrorSpec(429, "TOO_MANY_REQUESTS", "Too much request weight used; please back off."),
    -1006: ErrorSpec(500, "UNEXPECTED_RESP", "An unexpected response was received. Execution status unknown."),
    -1007: ErrorSpec(503, "TIMEOUT", "Timeout waiting for response from backend server. Execution status unknown."),
    -1013: ErrorSpec(400, "INVALID_MESSAGE", "Filter failure: LOT_SIZE"),
    -1015: ErrorSpec(429, "TOO_MANY_ORDERS", "Too many new orders."),
    -1021: ErrorSpec(400, "INVALID_TIMESTAMP", "Timestamp for this request is outside of the recvWindow."),
    -1022: ErrorSpec(400, "INVALID_SIGNATURE", "Signature for this request is not valid."),
    -1100: ErrorSpec(400, "ILLEGAL_CHARS", "Illegal characters found in a parameter."),
    -1102: ErrorSpec(400, "MANDATORY_PARAM_EMPTY_OR_MALFORMED",
                     "Mandatory parameter was not sent, was empty/null, or malformed."),
    -1111: ErrorSpec(400, "BAD_PRECISION", "Precision is over the maximum defined for this asset."),
    -1120: ErrorSpec(400, "BAD_INTERVAL", "Invalid interval."),
    -1121: ErrorSpec(400, "BAD_SYMBOL", "Invalid symbol."),
    -1145: ErrorSpec(400, "INVALID_CANCEL_RESTRICTIONS", "Invalid cancelRestrictions."),
    -1158: ErrorSpec(400, "OCO_ORDER_TYPE_REJECTED", "Order type not supported in OCO."),
    -1160: ErrorSpec(400, "OCO_ICEBERGQTY_TIMEINFORCE", "Iceberg orders in an OCO must be GTC."),
    -1165: ErrorSpec(400, "BUY_OCO_LIMIT_MUST_BE_BELOW", "A limit order in a buy OCO must be below."),
    -1166: ErrorSpec(400, "SELL_OCO_LIMIT_MUST_BE_ABOVE", "A limit order in a sell OCO must be above."),
    -1168: ErrorSpec(400, "BOTH_OCO_ORDERS_CANNOT_BE_LIMIT", "At least one OCO order must be contingent."),
    -1196: ErrorSpec(400, "BUY_OCO_STOP_LOSS_MUST_BE_ABOVE", "A stop loss order in a buy OCO must be above."),
    -1197: ErrorSpec(400, "SELL_OCO_STOP_LOSS_MUST_BE_BELOW", "A stop loss order in a sell OCO must be below."),
    -1198: ErrorSpec(400, "BUY_OCO_TAKE_PROFIT_MUST_BE_BELOW", "A take profit order in a buy OCO must be below."),
    -1199: ErrorSpec(400, "SELL_OCO_TAKE_PROFIT_MUST_BE_ABOVE", "A take profit order in a sell OCO must be above."),
    -2010: ErrorSpec(400, "NEW_ORDER_REJECTED", "Account has insufficient balance for requested action."),
    -2011: ErrorSpec(400, "CANCEL_REJECTED", "Unknown order sent."),
    -2013: ErrorSpec(400, "NO_SUCH_ORDER", "Order does not exist."),
    -2014: ErrorSpec(401, "BAD_API_KEY_FMT", "API-key format invalid."),
    -2015: ErrorSpec(401, "REJECTED_MBX_KEY", "Invalid API-key, IP, or permissions for action."),
    -2026: ErrorSpec(400, "ORDER_ARCHIVED", "Order was canceled or expired with no executed qty over 90 days ago."),
}


def error_json(code: int, msg: str | None = None) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) for an error code, with the table's default message unless one is given."""
    spec = ERROR_CODES[code]
    return spec.http_status, {"code": code, "msg": msg if msg is not None else spec.message}


# ---------------------------------------------------------------- domain -> Binance JSON

_STOP_TYPES = frozenset({OrderType.STOP_LOSS, OrderType.STOP_LOSS_LIMIT, OrderType.TAKE_PROFIT,
                         OrderType.TAKE_PROFIT_LIMIT})
_LIST_STATUS_TYPE = {ListStatus.EXECUTING: "EXEC_STARTED", ListStatus.ALL_DONE: "ALL_DONE",
                     ListStatus.REJECT: "RESPONSE"}


def dec(value: Decimal) -> str:
    """Binance amounts are JSON strings in plain notation."""
    return format_decimal(value)


def _order_core(order: Order) -> dict[str, Any]:
    body: dict[str, Any] = {
        "symbol": order.symbol, "orderId": order.order_id, "orderListId": order.order_list_id,
        "clientOrderId": order.client_order_id, "price": dec(order.price), "origQty": dec(order.orig_qty),
        "executedQty": dec(order.executed_qty), "origQuoteOrderQty": "0",
        "cummulativeQuoteQty": dec(order.cumulative_quote_qty), "status": order.status.value,
        "timeInForce": "GTC", "type": order.type.value, "side": order.side.value, "selfTradePreventionMode": "NONE",
    }
    if order.stop_price is not None:
        body["stopPrice"] = dec(order.stop_price)
    return body


def _working_time_ms(order: Order, time_ms: int) -> int:
    untriggered_stop = order.type in _STOP_TYPES and order.status is OrderStatus.NEW
    return -1 if untriggered_stop else time_ms


def fill_json(fill: Fill) -> dict[str, Any]:
    return {"price": dec(fill.price), "qty": dec(fill.qty), "commission": dec(fill.commission),
            "commissionAsset": fill.commission_asset, "tradeId": fill.trade_id}


def order_json(order: Order, *, full: bool = True) -> dict[str, Any]:
    """A POST /api/v3/order answer (RESULT, or FULL with `fills`); also one entry of an OCO's `orderReports`."""
    body = _order_core(order)
    if order.transact_time is not None:
        body["transactTime"] = ms_from_utc(order.transact_time)
        body["workingTime"] = _working_time_ms(order, body["transactTime"])
    if full:
        body["fills"] = [fill_json(f) for f in order.fills]
    return body


def queried_order_json(order: Order) -> dict[str, Any]:
    """A GET /api/v3/order (or openOrders entry) answer: no fills, `time`/`updateTime` instead of transactTime."""
    body = _order_core(order)
    body["icebergQty"] = "0"
    body["isWorking"] = order.type not in _STOP_TYPES or order.status is not OrderStatus.NEW
    if order.transact_time is not None:
        body["time"] = body["updateTime"] = ms_from_utc(order.transact_time)
        body["workingTime"] = _working_time_ms(order, body["time"])
    return body


def canceled_order_json(order: Order, cancel_client_order_id: str) -> dict[str, Any]:
    """A DELETE answer: `clientOrderId` is the cancel's id, `origClientOrderId` the order's."""
    body = order_json(order, full=False)
    body["origClientOrderId"] = order.client_order_id
    body["clientOrderId"] = cancel_client_order_id
    return body


def my_trades_json(order: Order, *, is_maker: bool = False) -> list[dict[str, Any]]:
    """GET /api/v3/myTrades?orderId= for one order, one entry per fill."""
    time_ms = ms_from_utc(order.transact_time) if order.transact_time is not None else 0
    return [
        {"symbol": order.symbol, "id": f.trade_id, "orderId": order.order_id, "orderListId": order.order_list_id,
         "price": dec(f.price), "qty": dec(f.qty), "quoteQty": dec(f.price * f.qty), "commission": dec(f.commission),
         "commissionAsset": f.commission_asset, "time": time_ms, "isBuyer": order.side.value == "BUY",
         "isMaker": is_maker, "isBestMatch": True}
        for f in order.fills
    ]


def order_list_json(oco: OcoOrder, *, reports: bool = True, full: bool = False) -> dict[str, Any]:
    """An order list. POST/DELETE answers carry `orderReports`; GET orderList/openOrderList do not."""
    body: dict[str, Any] = {
        "orderListId": oco.order_list_id, "contingencyType": "OCO",
        "listStatusType": _LIST_STATUS_TYPE[oco.list_status], "listOrderStatus": oco.list_status.value,
        "listClientOrderId": oco.list_client_order_id, "symbol": oco.symbol,
        "orders": [{"symbol": o.symbol, "orderId": o.order_id, "clientOrderId": o.client_order_id} for o in oco.legs],
    }
    if oco.transaction_time is not None:
        body["transactionTime"] = ms_from_utc(oco.transaction_time)
    if reports:
        body["orderReports"] = [order_json(o, full=full) for o in oco.legs]
    return body


def canceled_order_list_json(oco: OcoOrder, cancel_client_order_id: str) -> dict[str, Any]:
    body = order_list_json(oco, reports=False)
    body["orderReports"] = [canceled_order_json(o, f"{cancel_client_order_id}-{i}") for i, o in enumerate(oco.legs)]
    return body


def symbol_json(rules: SymbolRules) -> dict[str, Any]:
    """One `exchangeInfo.symbols[]` entry carrying the filters the bot reads."""
    lot = {"minQty": dec(rules.min_qty), "maxQty": dec(rules.max_qty), "stepSize": dec(rules.step_size)}
    filters = [
        {"filterType": "PRICE_FILTER", "minPrice": dec(rules.min_price), "maxPrice": dec(rules.max_price),
         "tickSize": dec(rules.tick_size)},
        {"filterType": "LOT_SIZE", **lot},
        {"filterType": "MARKET_LOT_SIZE", **lot},
        {"filterType": "NOTIONAL", "minNotional": dec(rules.min_notional), "applyMinToMarket": True,
         "maxNotional": "9000000", "applyMaxToMarket": False, "avgPriceMins": 5},
    ]
    band = rules.percent_price
    if band is not None:
        filters.append({"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": dec(band.bid_up),
                        "bidMultiplierDown": dec(band.bid_down), "askMultiplierUp": dec(band.ask_up),
                        "askMultiplierDown": dec(band.ask_down), "avgPriceMins": band.avg_price_mins})
    return {
        "symbol": rules.symbol, "status": rules.status, "baseAsset": rules.base_asset, "baseAssetPrecision": 8,
        "quoteAsset": rules.quote_asset, "quotePrecision": 8, "quoteAssetPrecision": 8,
        "orderTypes": [t.value for t in OrderType if t is not OrderType.STOP_LOSS and t is not OrderType.TAKE_PROFIT],
        "ocoAllowed": True, "quoteOrderQtyMarketAllowed": True, "isSpotTradingAllowed": rules.spot_allowed,
        "filters": filters, "permissions": [], "permissionSets": [["SPOT"] if rules.spot_allowed else ["MARGIN"]],
    }


def exchange_info_json(rules: Sequence[SymbolRules], server_time_ms: int, weight_limit: int = 6000) -> dict[str, Any]:
    return {
        "timezone": "UTC", "serverTime": server_time_ms,
        "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                        "limit": weight_limit}],
        "exchangeFilters": [], "symbols": [symbol_json(r) for r in rules],
    }


def kline_json(candle: Candle, interval_ms: int) -> list[Any]:
    """One kline array; quote volume and trade counts are not kept in Candle, so they are zero."""
    return [candle.open_time_ms, dec(candle.open), dec(candle.high), dec(candle.low), dec(candle.close),
            dec(candle.volume), candle.open_time_ms + interval_ms - 1, "0", 0, "0", "0", "0"]


def account_json(balances: Sequence[Balance], update_time_ms: int, *, omit_zero: bool = False) -> dict[str, Any]:
    kept = [b for b in balances if not (omit_zero and b.total == 0)]
    return {
        "makerCommission": 10, "takerCommission": 10, "buyerCommission": 0, "sellerCommission": 0,
        "canTrade": True, "canWithdraw": False, "canDeposit": False, "brokered": False,
        "updateTime": update_time_ms, "accountType": "SPOT", "permissions": ["SPOT"],
        "balances": [{"asset": b.asset, "free": dec(b.free), "locked": dec(b.locked)} for b in kept],
    }


def ticker_price_json(symbol: str, price: Decimal) -> dict[str, Any]:
    return {"symbol": symbol, "price": dec(price)}


def server_time_json(server_time_ms: int) -> dict[str, Any]:
    return {"serverTime": server_time_ms}
