"""A Binance-spot-compatible HTTP server over simulated accounts, with fault injection (`trdbot exchange-sim`)."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import socket
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from app.devtools.faults import FaultKind, FaultPlan, FaultRule, FaultStage
from app.domain.clock import Clock, ms_from_utc, utc_from_ms
from app.domain.errors import ConfigurationError, DataError, OrderNotFound, OrderRejected, TradingError
from app.domain.values import Candle, OcoOrder, Order, OrderType, Side, SymbolRules, Timeframe, oco_leg_client_ids
from app.venues.binance.protocol import (
    API_KEY_HEADER,
    DEFAULT_RECV_WINDOW_MS,
    ERROR_CODES,
    MAX_KLINES,
    MAX_RECV_WINDOW_MS,
    MINUTE_MS,
    RETRY_AFTER_HEADER,
    SIGNED_ENDPOINTS,
    USED_WEIGHT_HEADER,
    Endpoint,
    account_json,
    canceled_order_json,
    canceled_order_list_json,
    endpoint_weight,
    exchange_info_json,
    kline_json,
    my_trades_json,
    order_json,
    order_list_json,
    parse_params,
    queried_order_json,
    server_time_json,
    ticker_price_json,
    timestamp_error,
    verify_signature,
)
from app.venues.paper.accounts import InMemorySimAccountStore, SimAccountStore
from app.venues.paper.exchange import MockBinanceService
from app.venues.paper.market import SimulatedMarket

logger = logging.getLogger(__name__)
T = TypeVar("T")
ORDER_TEST_PATH = "/api/v3/order/test"
DEFAULT_KLINES = 500
_DECIMAL_TEXT = re.compile(r"[0-9]{1,20}(\.[0-9]{1,20})?")
_MAX_DECIMALS = 8
# successful order placements and cancels cost no weight (reference section 4)
_FREE_WHEN_OK = frozenset({("POST", Endpoint.ORDER), ("POST", Endpoint.ORDER_LIST_OCO), ("DELETE", Endpoint.ORDER),
                           ("DELETE", Endpoint.ORDER_LIST)})
_SIGNED = frozenset({*SIGNED_ENDPOINTS, ORDER_TEST_PATH})


class BinanceApiError(Exception):
    """An error answer in Binance's shape: `{"code": ..., "msg": ...}` with the code's HTTP status."""

    def __init__(self, code: int, msg: str | None = None, status: int | None = None,
                 headers: Mapping[str, str] | None = None, fault: FaultRule | None = None) -> None:
        spec = ERROR_CODES.get(code)
        self.fault = fault  # the injected fault that caused this answer, if any
        self.code = code
        self.msg = msg if msg is not None else (spec.message if spec else "Error.")
        self.status = status if status is not None else (spec.http_status if spec else 400)
        self.headers = dict(headers or {})
        super().__init__(f"{self.status} {code} {self.msg}")


@dataclass(frozen=True, slots=True)
class ApiAccount:
    """One simulated account reachable with an API key and its HMAC secret, funded once with `balances`."""

    api_key: str
    api_secret: str
    balances: Mapping[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One served request, for tests and logs: what came in, what went out, which fault (if any) hit it."""

    time: datetime
    method: str
    path: str
    status: int
    code: int | None = None
    fault: str | None = None
    api_key: str | None = None


@dataclass
class _Context:
    method: str
    path: str
    params: dict[str, str]
    now_ms: int
    service: MockBinanceService | None = None
    fill_ratio: Decimal | None = None

    @property
    def account(self) -> MockBinanceService:
        assert self.service is not None, "signed endpoint without an account"
        return self.service


Handler = Callable[[_Context], Awaitable[Any]]


class _DroppedResponse(Response):
    """Starts an answer and hangs up mid-body: the client sees the connection drop after the work was done."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"4096")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"symbol":', "more_body": True})


class ExchangeSimulator:
    """Serves Binance's spot REST API for a set of accounts on one simulated market and clock."""

    def __init__(
        self,
        market: SimulatedMarket,
        clock: Clock,
        accounts: Sequence[ApiAccount],
        faults: FaultPlan | None = None,
        store: SimAccountStore | None = None,
        weight_limit: int = 6000,
        check_timestamps: bool = True,
        keep_requests: int = 10_000,
    ) -> None:
        if len({a.api_key for a in accounts}) != len(accounts):
            raise ValueError("API keys must be unique")
        self.market = market
        self.clock = clock
        self.faults = faults or FaultPlan()
        self.requests: deque[RequestRecord] = deque(maxlen=keep_requests)
        self._accounts = {a.api_key: a for a in accounts}
        self._store = store or InMemorySimAccountStore()
        self._services: dict[str, MockBinanceService] = {}
        self._weight_limit = weight_limit
        self._check_timestamps = check_timestamps
        self._weight_minute = -1
        self._used_weight = 0
        self._banned_until_ms = 0
        self._ids = itertools.count(1)
        self._routes = self._route_table()

    async def open(self) -> None:
        """Open (and fund, the first time) every account; idempotent."""
        for key, account in self._accounts.items():
            if key not in self._services:
                self._services[key] = await MockBinanceService.open_account(
                    f"api-{len(self._services) + 1}", self.market, self._store, self.clock, account.balances
                )

    def account(self, api_key: str) -> MockBinanceService:
        """The simulated exchange behind a key (for tests and tools; call after `open`)."""
        return self._services[api_key]

    def _route_table(self) -> dict[tuple[str, str], Handler]:
        return {
            ("GET", Endpoint.PING): self._ping, ("GET", Endpoint.TIME): self._time,
            ("GET", Endpoint.EXCHANGE_INFO): self._exchange_info, ("GET", Endpoint.KLINES): self._klines,
            ("GET", Endpoint.TICKER_PRICE): self._ticker_price, ("GET", Endpoint.ACCOUNT): self._account,
            ("POST", Endpoint.ORDER): self._new_order, ("POST", ORDER_TEST_PATH): self._test_order,
            ("GET", Endpoint.ORDER): self._query_order, ("DELETE", Endpoint.ORDER): self._cancel_order,
            ("GET", Endpoint.OPEN_ORDERS): self._open_orders, ("GET", Endpoint.MY_TRADES): self._my_trades,
            ("POST", Endpoint.ORDER_LIST_OCO): self._new_oco, ("GET", Endpoint.ORDER_LIST): self._query_order_list,
            ("DELETE", Endpoint.ORDER_LIST): self._cancel_order_list,
            ("GET", Endpoint.OPEN_ORDER_LIST): self._open_order_lists,
        }

    # ------------------------------------------------------------ request pipeline

    async def handle(self, request: Request) -> Response:
        """Weight and bans, faults before, authentication, the handler, faults after; one record per request."""
        method, path = request.method, request.url.path
        handler = self._routes.get((method, path))
        if handler is None:
            return self._finish(request, 404, {"code": -1000, "msg": f"The simulator does not serve {method} {path}"})
        try:
            delayed_by = await self._before(method, path)
            context = await self._context(request)
            context.fill_ratio = self._fill_ratio(method, path)
            body = await handler(context)
        except BinanceApiError as e:
            return self._finish(request, e.status, {"code": e.code, "msg": e.msg}, e.headers, e.fault)
        faults = self.faults.take(method, path, FaultStage.AFTER)
        if faults:
            return await self._after_fault(request, faults[0], body)
        return self._finish(request, 200, body, fault=delayed_by)

    async def _before(self, method: str, path: str) -> FaultRule | None:
        """Bans, weight and the faults that stop a request from running; returns a latency fault that slowed it."""
        now_ms = self._now_ms()
        self._check_ban(now_ms)
        self._check_weight(method, path, now_ms)
        delayed_by = None
        for rule in self.faults.take(method, path, FaultStage.BEFORE):
            await self._apply_before(rule, now_ms)
            delayed_by = rule  # only a latency fault returns from _apply_before
        return delayed_by

    async def _apply_before(self, rule: FaultRule, now_ms: int) -> None:
        if rule.kind is FaultKind.LATENCY:
            await asyncio.sleep(rule.delay_s)  # wall time on purpose: it is the network that is slow
            return
        if rule.kind is FaultKind.RATE_LIMIT:
            # Binance bans an IP that keeps sending inside the Retry-After window
            self._banned_until_ms = max(self._banned_until_ms, now_ms + rule.retry_after_s * 1000)
            raise BinanceApiError(-1003, status=429, headers={RETRY_AFTER_HEADER: str(rule.retry_after_s)}, fault=rule)
        if rule.kind is FaultKind.BAN:
            self._banned_until_ms = max(self._banned_until_ms, now_ms + rule.retry_after_s * 1000)
            raise BinanceApiError(-1003, "IP banned until further notice (simulated).", 418,
                                  {RETRY_AFTER_HEADER: str(rule.retry_after_s)}, rule)
        if rule.kind is FaultKind.SERVER_ERROR:
            raise _server_error(rule)
        if rule.kind is FaultKind.REJECT:
            raise BinanceApiError(rule.code or -2010, rule.msg, fault=rule)

    def _fill_ratio(self, method: str, path: str) -> Decimal | None:
        if (method, path) != ("POST", Endpoint.ORDER):
            return None
        rules = self.faults.take(method, path, FaultStage.DURING)
        return rules[0].fill_ratio if rules else None

    async def _after_fault(self, request: Request, rule: FaultRule, body: Any) -> Response:
        logger.warning("simulator: %s after executing %s %s", rule.kind, request.method, request.url.path)
        if rule.kind is FaultKind.SERVER_ERROR:
            error = _server_error(rule)
            return self._finish(request, error.status, {"code": error.code, "msg": error.msg}, fault=rule)
        self._record(request, 200, None, rule)
        if rule.drop:
            return _DroppedResponse()
        await asyncio.sleep(rule.delay_s)  # the client has given up by now; the late answer goes nowhere
        return JSONResponse(body, headers=self._weight_headers())

    def _finish(self, request: Request, status: int, body: Any, headers: Mapping[str, str] | None = None,
                fault: FaultRule | None = None) -> Response:
        self._charge(request.method, request.url.path, status)
        code = body.get("code") if isinstance(body, dict) and status != 200 else None
        self._record(request, status, code, fault)
        return JSONResponse(body, status_code=status, headers={**(headers or {}), **self._weight_headers()})

    def _record(self, request: Request, status: int, code: int | None, rule: FaultRule | None) -> None:
        self.requests.append(RequestRecord(self.clock.now(), request.method, request.url.path, status, code,
                                           rule.kind.value if rule is not None else None,
                                           request.headers.get(API_KEY_HEADER)))

    # ------------------------------------------------------------ limits

    def _now_ms(self) -> int:
        return ms_from_utc(self.clock.now())

    def _check_ban(self, now_ms: int) -> None:
        if now_ms < self._banned_until_ms:
            retry_after_s = -(-(self._banned_until_ms - now_ms) // 1000)
            raise BinanceApiError(-1003, f"Way too much request weight used; IP banned for {retry_after_s} s.", 418,
                                  {RETRY_AFTER_HEADER: str(retry_after_s)})

    def _roll_weight_window(self, now_ms: int) -> None:
        minute = now_ms // MINUTE_MS
        if minute != self._weight_minute:
            self._weight_minute, self._used_weight = minute, 0

    def _check_weight(self, method: str, path: str, now_ms: int) -> None:
        self._roll_weight_window(now_ms)
        if self._used_weight + endpoint_weight(method, path) > self._weight_limit:
            retry_after_s = -(-((self._weight_minute + 1) * MINUTE_MS - now_ms) // 1000)
            self._banned_until_ms = max(self._banned_until_ms, now_ms + retry_after_s * 1000)
            raise BinanceApiError(-1003, status=429, headers={RETRY_AFTER_HEADER: str(retry_after_s)})

    def _charge(self, method: str, path: str, status: int) -> None:
        self._roll_weight_window(self._now_ms())
        if not (status == 200 and (method, path) in _FREE_WHEN_OK):
            self._used_weight += endpoint_weight(method, path)

    def _weight_headers(self) -> dict[str, str]:
        return {USED_WEIGHT_HEADER: str(self._used_weight)}

    # ------------------------------------------------------------ authentication

    async def _context(self, request: Request) -> _Context:
        query = request.scope.get("query_string", b"").decode("latin-1")
        body = (await request.body()).decode("latin-1")
        params = parse_params(query, body)
        context = _Context(request.method, request.url.path, params, self._now_ms())
        if request.url.path in _SIGNED:
            context.service = self._authenticate(request.headers.get(API_KEY_HEADER), query, body, params)
        return context

    def _authenticate(self, api_key: str | None, query: str, body: str,
                      params: Mapping[str, str]) -> MockBinanceService:
        if not api_key:
            raise BinanceApiError(-2014)
        account = self._accounts.get(api_key)
        service = self._services.get(api_key)
        if account is None or service is None:
            raise BinanceApiError(-2015)
        _required(params, "signature")
        timestamp_ms = _int(params, "timestamp")
        recv_window_ms = _recv_window_ms(params)
        if not verify_signature(query, body, account.api_secret):
            raise BinanceApiError(-1022)
        if self._check_timestamps and (problem := timestamp_error(timestamp_ms, self._now_ms(), recv_window_ms)):
            raise BinanceApiError(-1021, problem)
        return service

    # ------------------------------------------------------------ market data

    async def _ping(self, _: _Context) -> Any:
        return {}

    async def _time(self, context: _Context) -> Any:
        return server_time_json(context.now_ms)

    async def _exchange_info(self, context: _Context) -> Any:
        symbols = self._requested_symbols(context.params)
        return exchange_info_json([self._rules(s) for s in symbols], context.now_ms, self._weight_limit)

    async def _ticker_price(self, context: _Context) -> Any:
        if "symbol" in context.params:
            symbol = self._symbol(context.params)
            return ticker_price_json(symbol, self._last_price(symbol, context.now_ms))
        return [ticker_price_json(s, self._last_price(s, context.now_ms))
                for s in self._requested_symbols(context.params)]

    async def _klines(self, context: _Context) -> Any:
        params = context.params
        symbol = self._symbol(params)
        try:
            timeframe = Timeframe(_required(params, "interval"))
        except ValueError as e:
            raise BinanceApiError(-1120) from e
        limit = max(1, min(MAX_KLINES, _int(params, "limit", DEFAULT_KLINES)))
        window = _KlineWindow(_int(params, "startTime", None), _int(params, "endTime", None), limit)
        candles = self._kline_window(symbol, timeframe, window, context.now_ms)
        return [kline_json(c, timeframe.ms) for c in candles]

    def _kline_window(self, symbol: str, timeframe: Timeframe, window: _KlineWindow, now_ms: int) -> list[Candle]:
        """Closed candles in the window plus, as on Binance, the candle still open at `now` (built from the past)."""
        store = self.market.candles
        newest_closed_open_ms = now_ms - timeframe.ms
        stop_ms = min(newest_closed_open_ms, window.end_ms if window.end_ms is not None else newest_closed_open_ms)
        if window.start_ms is not None:
            candles = store.candles_between(symbol, timeframe, window.start_ms, stop_ms + 1)[: window.limit]
        else:
            candles = [c for c in store.closed_candles(symbol, timeframe, utc_from_ms(stop_ms + timeframe.ms),
                                                       window.limit)]
        live = self._open_candle(symbol, timeframe, now_ms)
        if live is not None and window.contains(live.open_time_ms) and (not candles or
                                                                        candles[-1].open_time_ms < live.open_time_ms):
            candles.append(live)
        return candles[-window.limit:] if window.start_ms is None else candles[: window.limit]

    def _open_candle(self, symbol: str, timeframe: Timeframe, now_ms: int) -> Candle | None:
        """The candle of the bucket `now` falls in, from the 5m candles that have closed in it: no future leaks."""
        open_ms = now_ms // timeframe.ms * timeframe.ms
        closed_5m_end = now_ms - Timeframe.M5.ms + 1
        parts = self.market.candles.candles_between(symbol, Timeframe.M5, open_ms, closed_5m_end)
        if parts:
            return Candle(open_ms, parts[0].open, max(c.high for c in parts), min(c.low for c in parts),
                          parts[-1].close, sum((c.volume for c in parts), Decimal(0)))
        try:
            last = self.market.candles.price_at(symbol, utc_from_ms(now_ms))
        except DataError:
            return None
        return Candle(open_ms, last, last, last, last, Decimal(0))

    # ------------------------------------------------------------ account and orders

    async def _account(self, context: _Context) -> Any:
        balances = await context.account.get_balances()
        return account_json(balances, context.now_ms, omit_zero=_flag(context.params, "omitZeroBalances"))

    async def _new_order(self, context: _Context) -> Any:
        params = context.params
        symbol, side, quantity = self._market_order_params(params)
        client_order_id = params.get("newClientOrderId") or self._generated_id()
        available = quantity * context.fill_ratio if context.fill_ratio is not None else None
        order = await _exchange_call(context.account.place_market_order(
            symbol, side, quantity, client_order_id, available_qty=available))
        return _order_answer(order, params.get("newOrderRespType", "FULL"))

    async def _test_order(self, context: _Context) -> Any:
        self._market_order_params(context.params)
        return {}

    def _market_order_params(self, params: Mapping[str, str]) -> tuple[str, Side, Decimal]:
        symbol = self._symbol(params)
        side = _side(params)
        order_type = _required(params, "type")
        if order_type != OrderType.MARKET:
            raise BinanceApiError(-1013, f"The simulator accepts MARKET orders only (got {order_type}); "
                                         "exits go through POST /api/v3/orderList/oco.")
        if "quantity" not in params and "quoteOrderQty" in params:
            raise BinanceApiError(-1013, "The simulator does not support quoteOrderQty; send quantity.")
        return symbol, side, _decimal(params, "quantity")

    async def _query_order(self, context: _Context) -> Any:
        return queried_order_json(await self._find_order(context, -2013))

    async def _cancel_order(self, context: _Context) -> Any:
        order = await self._find_order(context, -2011)
        canceled = await _exchange_call(context.account.cancel_order(order.symbol, order.client_order_id), -2011)
        return canceled_order_json(canceled, context.params.get("newClientOrderId") or self._generated_id())

    async def _open_orders(self, context: _Context) -> Any:
        symbol = self._symbol(context.params) if "symbol" in context.params else None
        orders = await context.account.list_orders()
        return [queried_order_json(o) for o in orders
                if not o.status.is_final and symbol in (None, o.symbol)]

    async def _my_trades(self, context: _Context) -> Any:
        params = context.params
        symbol = self._symbol(params)
        order_id = _int(params, "orderId", None)
        orders = [o for o in await context.account.list_orders()
                  if o.symbol == symbol and order_id in (None, o.order_id)]
        trades = [t for o in orders for t in my_trades_json(o, is_maker=o.type is OrderType.LIMIT_MAKER)]
        from_id = _int(params, "fromId", 0)
        limit = max(1, min(MAX_KLINES, _int(params, "limit", DEFAULT_KLINES)))
        return sorted((t for t in trades if t["id"] >= from_id), key=lambda t: t["id"])[:limit]

    async def _find_order(self, context: _Context, not_found_code: int) -> Order:
        params = context.params
        symbol = self._symbol(params)
        order_id = _int(params, "orderId", None)
        client_order_id = params.get("origClientOrderId")
        if order_id is None and not client_order_id:
            raise BinanceApiError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, "
                                         "but both were empty/null!")
        for order in reversed(await context.account.list_orders()):
            by_id = order_id is None or order.order_id == order_id
            by_client = not client_order_id or order.client_order_id == client_order_id
            if order.symbol == symbol and by_id and by_client:
                return order
        raise BinanceApiError(not_found_code)

    # ------------------------------------------------------------ order lists

    async def _new_oco(self, context: _Context) -> Any:
        params = context.params
        symbol = self._symbol(params)
        list_client_order_id = params.get("listClientOrderId") or self._generated_id()
        _check_oco_shape(params, list_client_order_id)
        oco = await _exchange_call(context.account.place_oco_order(
            symbol, _decimal(params, "quantity"), _decimal(params, "abovePrice"), _decimal(params, "belowStopPrice"),
            _decimal(params, "belowPrice"), list_client_order_id))
        return order_list_json(oco, reports=True, full=params.get("newOrderRespType") == "FULL")

    async def _query_order_list(self, context: _Context) -> Any:
        return order_list_json(await self._find_order_list(context, None, -2013), reports=False)

    async def _cancel_order_list(self, context: _Context) -> Any:
        symbol = self._symbol(context.params)
        found = await self._find_order_list(context, symbol, -2011)
        oco = await _exchange_call(context.account.cancel_oco_order(symbol, found.list_client_order_id), -2011)
        return canceled_order_list_json(oco, context.params.get("newClientOrderId") or self._generated_id())

    async def _open_order_lists(self, context: _Context) -> Any:
        return [order_list_json(x, reports=False) for x in await context.account.get_open_oco_orders()]

    async def _find_order_list(self, context: _Context, symbol: str | None, not_found_code: int) -> OcoOrder:
        params = context.params
        list_id = _int(params, "orderListId", None)
        client_id = params.get("listClientOrderId") or params.get("origClientOrderId")
        if list_id is None and not client_id:
            raise BinanceApiError(-1102, "Param 'listClientOrderId' or 'orderListId' must be sent, "
                                         "but both were empty/null!")
        for oco in reversed(await context.account.list_order_lists()):
            matches = (list_id is None or oco.order_list_id == list_id) and (
                not client_id or oco.list_client_order_id == client_id)
            if matches and symbol in (None, oco.symbol):
                return oco
        raise BinanceApiError(not_found_code, "Order list does not exist." if not_found_code == -2013 else None)

    # ------------------------------------------------------------ helpers

    def _generated_id(self) -> str:
        return f"sim{next(self._ids):012d}"

    def _rules(self, symbol: str) -> SymbolRules:
        try:
            return self.market.rules(symbol)
        except ConfigurationError as e:
            raise BinanceApiError(-1121) from e

    def _symbol(self, params: Mapping[str, str]) -> str:
        symbol = _required(params, "symbol")
        self._rules(symbol)
        return symbol

    def _all_symbols(self) -> list[str]:
        known = []
        for symbol in self.market.candles.symbols():
            try:
                self.market.rules(symbol)
            except ConfigurationError:
                continue
            known.append(symbol)
        return known

    def _requested_symbols(self, params: Mapping[str, str]) -> list[str]:
        if "symbol" in params:
            return [self._symbol(params)]
        if "symbols" in params:
            try:
                names = json.loads(params["symbols"])
            except ValueError as e:
                raise BinanceApiError(-1100, "Illegal characters found in parameter 'symbols'.") from e
            return [self._symbol({"symbol": str(name)}) for name in names]
        return self._all_symbols()

    def _last_price(self, symbol: str, now_ms: int) -> Decimal:
        try:
            return self.market.last_price(symbol, now_ms)
        except DataError as e:
            raise BinanceApiError(-1000, f"The simulator has no candle for {symbol} at this time: {e}") from e


@dataclass(frozen=True, slots=True)
class _KlineWindow:
    start_ms: int | None
    end_ms: int | None
    limit: int

    def contains(self, open_ms: int) -> bool:
        after_start = self.start_ms is None or open_ms >= self.start_ms
        return after_start and (self.end_ms is None or open_ms <= self.end_ms)


def _server_error(rule: FaultRule) -> BinanceApiError:
    code = rule.code if rule.code is not None else (-1007 if rule.status == 503 else -1000)
    return BinanceApiError(code, rule.msg, rule.status, fault=rule)


async def _exchange_call(call: Coroutine[Any, Any, T], not_found_code: int = -2013) -> T:
    """Run a MockBinanceService call; its errors become Binance error answers with Binance's own messages."""
    try:
        return await call
    except OrderNotFound as e:
        raise BinanceApiError(not_found_code) from e
    except OrderRejected as e:
        logger.info("simulator: rejected: %s", e)
        code = e.code if e.code is not None and e.code in ERROR_CODES else -2010
        raise BinanceApiError(code, str(e).split(" (", 1)[0]) from e
    except ConfigurationError as e:
        raise BinanceApiError(-1121) from e
    except (DataError, TradingError) as e:
        raise BinanceApiError(-1000, f"Simulator error: {e}") from e


def _order_answer(order: Order, response_type: str) -> Any:
    if response_type == "ACK":
        answer = order_json(order, full=False)
        keep = ("symbol", "orderId", "orderListId", "clientOrderId", "transactTime")
        return {k: answer[k] for k in keep if k in answer}
    return order_json(order, full=response_type != "RESULT")


def _check_oco_shape(params: Mapping[str, str], list_client_order_id: str) -> None:
    """The simulator's OCO is the bot's protective bracket: SELL, LIMIT_MAKER above, STOP_LOSS_LIMIT below."""
    if _side(params) is not Side.SELL:
        raise BinanceApiError(-1013, "The simulator supports SELL OCOs only.")
    if _required(params, "aboveType") != OrderType.LIMIT_MAKER:
        raise BinanceApiError(-1158, "The simulator supports aboveType=LIMIT_MAKER only.")
    if _required(params, "belowType") != OrderType.STOP_LOSS_LIMIT:
        raise BinanceApiError(-1158, "The simulator supports belowType=STOP_LOSS_LIMIT only.")
    _required(params, "belowTimeInForce")
    take_profit_id, stop_id = oco_leg_client_ids(list_client_order_id)
    for name, expected in (("aboveClientOrderId", take_profit_id), ("belowClientOrderId", stop_id)):
        if params.get(name, expected) != expected:
            raise BinanceApiError(-1102, f"The simulator names OCO legs '<listClientOrderId>-tp' and '-sl': "
                                         f"'{name}' must be '{expected}'.")


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if not value:
        raise BinanceApiError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
    return value


def _int(params: Mapping[str, str], name: str, default: Any = ...) -> Any:
    if name not in params and default is not ...:
        return default
    text = _required(params, name)
    if not re.fullmatch(r"-?[0-9]{1,20}", text):
        raise BinanceApiError(-1100, f"Illegal characters found in parameter '{name}'.")
    return int(text)


def _decimal(params: Mapping[str, str], name: str) -> Decimal:
    text = _required(params, name)
    if not _DECIMAL_TEXT.fullmatch(text):
        raise BinanceApiError(-1100, f"Illegal characters found in parameter '{name}'; "
                                     "legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.")
    value = Decimal(text)
    if -value.normalize().as_tuple().exponent > _MAX_DECIMALS:  # type: ignore[operator]
        raise BinanceApiError(-1111)
    return value


def _side(params: Mapping[str, str]) -> Side:
    try:
        return Side(_required(params, "side"))
    except ValueError as e:
        raise BinanceApiError(-1102, "Parameter 'side' must be BUY or SELL.") from e


def _flag(params: Mapping[str, str], name: str) -> bool:
    return params.get(name, "false").lower() == "true"


def _recv_window_ms(params: Mapping[str, str]) -> int:
    text = params.get("recvWindow")
    if text is None:
        return DEFAULT_RECV_WINDOW_MS
    if not _DECIMAL_TEXT.fullmatch(text) or Decimal(text) > MAX_RECV_WINDOW_MS:
        raise BinanceApiError(-1102, f"recvWindow must be less than {MAX_RECV_WINDOW_MS}.")
    return int(Decimal(text))


# ---------------------------------------------------------------- the ASGI app and a thread to serve it in


def create_simulator_app(simulator: ExchangeSimulator) -> Starlette:
    """The HTTP app: every path goes through `ExchangeSimulator.handle`; accounts open at start-up."""

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await simulator.open()
        yield

    methods = ["GET", "POST", "PUT", "DELETE"]
    return Starlette(routes=[Route("/{path:path}", simulator.handle, methods=methods)], lifespan=lifespan)


class SimulatorThread:
    """Serves an ASGI app with uvicorn on 127.0.0.1:<free port> in a background thread (tests, embedding)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, startup_timeout_s: float = 10.0) -> None:
        import uvicorn

        # proto must be TCP explicitly: asyncio sets TCP_NODELAY only then (else Nagle adds 40 ms per answer)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self._socket.listen(128)  # connections made before uvicorn accepts wait in the backlog
        self.host, self.port = self._socket.getsockname()[:2]
        config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=f"exchange-sim-{self.port}", daemon=True)
        self._startup_timeout_s = startup_timeout_s

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._server.serve(sockets=[self._socket]))

    def start(self) -> SimulatorThread:
        self._thread.start()
        waited = threading.Event()
        for _ in range(int(self._startup_timeout_s / 0.01)):
            if self._server.started:
                return self
            if not self._thread.is_alive():
                break
            waited.wait(0.01)
        raise RuntimeError(f"exchange simulator did not start on {self.base_url}")

    def run(self, coroutine: Coroutine[Any, Any, T], timeout_s: float = 10.0) -> T:
        """Run a coroutine on the server's loop (to inspect accounts without racing the requests)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
