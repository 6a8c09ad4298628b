"""BinanceService: the ExchangeAdapter for Binance spot over our own async httpx client."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import httpx

from app.domain.clock import Clock
from app.domain.errors import (
    ConfigurationError,
    ExchangeError,
    OrderNotFound,
    OrderRejected,
    OrderStatusUnknown,
    RateLimited,
    TradingError,
)
from app.domain.values import (
    ZERO,
    Balance,
    Candle,
    OcoOrder,
    Order,
    Side,
    SymbolRules,
    Timeframe,
    format_decimal,
    oco_leg_client_ids,
)
from app.venues.binance.errors import DEFAULT_RETRY_AFTER_S, Failure, RequestContext, redact, to_exchange_error
from app.venues.binance.models import (
    BinanceAccount,
    BinanceErrorBody,
    BinanceExchangeInfo,
    BinanceKline,
    BinanceOrder,
    BinanceOrderList,
    BinanceServerTime,
    BinanceTickerPrice,
    BinanceTrade,
    balance_from_binance,
    candle_from_binance,
    oco_from_binance,
    order_from_binance,
    symbol_rules_from_binance,
)
from app.venues.binance.protocol import (
    API_KEY_HEADER,
    DEFAULT_RECV_WINDOW_MS,
    MAX_KLINES,
    MAX_RECV_WINDOW_MS,
    MINUTE_MS,
    PRODUCTION_BASE_URL,
    RETRY_AFTER_HEADER,
    TESTNET_BASE_URL,
    USED_WEIGHT_HEADER,
    Endpoint,
    encode_params,
    endpoint_weight,
    signed_query,
)
from app.venues.binance.server_time import ServerTimeSync

logger = logging.getLogger(__name__)
T = TypeVar("T")
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_NOTABLE_OFFSET_CHANGE_MS = 1000


def default_base_url(testnet: bool) -> str:
    return TESTNET_BASE_URL if testnet else PRODUCTION_BASE_URL


class SignatureRedactingFilter(logging.Filter):
    """httpx logs every request URL at INFO; signed URLs must not reach the logs with their signature."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "signature=" in message:
            record.msg, record.args = redact(message, ""), ()
        return True


def install_log_redaction(logger_name: str = "httpx") -> None:
    target = logging.getLogger(logger_name)
    if not any(isinstance(f, SignatureRedactingFilter) for f in target.filters):
        target.addFilter(SignatureRedactingFilter())


@dataclass(frozen=True, slots=True)
class _Call:
    method: str
    path: str
    params: tuple[tuple[str, str], ...]
    signed: bool
    context: RequestContext


def _on_grid(value: Decimal, quantum: Decimal, name: str, context: RequestContext) -> str:
    """Plain text on the quantum's decimals; off-grid values are the caller's bug, refused before sending."""
    if value <= 0 or value % quantum != 0:
        raise OrderRejected(f"Binance: {context.describe()} not sent: {name} {value} is not a positive multiple "
                            f"of {format_decimal(quantum)}")
    return format_decimal(value, quantum)


def _retry_after_s(response: httpx.Response) -> float | None:
    try:
        return float(response.headers[RETRY_AFTER_HEADER])
    except (KeyError, ValueError):
        return None


class BinanceService:
    """One Binance account. Implements `ExchangeAdapter`; see reference/binance-spot-api.md for the wire facts."""

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        base_url: str,
        clock: Clock,
        http: httpx.AsyncClient | None = None,
        recv_window_ms: int = DEFAULT_RECV_WINDOW_MS,
        weight_limit: int = 6000,
        weight_headroom: float = 0.8,
        rules_ttl_s: float = 3600.0,
        timeout_s: float = 10.0,
        max_retry_wait_s: float = 120.0,
        time_sync: ServerTimeSync | None = None,
    ) -> None:
        if not 0 < recv_window_ms <= MAX_RECV_WINDOW_MS:
            raise ValueError(f"recv_window_ms must be in 1..{MAX_RECV_WINDOW_MS}")
        self._api_key = api_key
        self._secret = api_secret
        self._base_url = base_url.rstrip("/")
        self._clock = clock
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout_s)
        self._recv_window_ms = recv_window_ms
        self._weight_threshold = weight_limit * weight_headroom
        self._rules_ttl = timedelta(seconds=rules_ttl_s)
        self._max_retry_wait_s = max_retry_wait_s
        self._time = time_sync or ServerTimeSync(clock)
        self._used_weight = 0
        self._weight_minute = -1
        self._blocked_until: datetime | None = None
        self._rules: dict[str, tuple[SymbolRules, datetime]] = {}
        install_log_redaction()

    @property
    def time_offset_ms(self) -> int:
        return self._time.offset_ms

    @property
    def used_weight(self) -> int:
        return self._used_weight

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    # ------------------------------------------------------------ market data

    async def sync_time(self) -> int:
        """Measure the server clock offset (added to every `timestamp`, shared by the venue's clients); returns it."""
        self._time.attempting()
        sent_ms = self._time.local_ms()
        server_ms = await self.server_time_ms()
        change_ms = self._time.record(server_ms, sent_ms, self._time.local_ms())
        # against a venue that runs at another rate every resync moves the offset; a steady one stays quiet
        level = logging.INFO if abs(change_ms) >= _NOTABLE_OFFSET_CHANGE_MS else logging.DEBUG
        logger.log(level, "Binance server time offset is now %d ms", self._time.offset_ms)
        return self._time.offset_ms

    async def server_time_ms(self) -> int:
        """The venue's clock (GET /api/v3/time), e.g. for a market clock that follows the venue."""
        call = _Call("GET", Endpoint.TIME, (), False, RequestContext("read server time"))
        data = await self._call(call)
        return self._parse(call, lambda: BinanceServerTime.model_validate(data).server_time)

    async def get_symbol_rules(self, symbol: str) -> SymbolRules:
        now = self._clock.now()
        cached = self._rules.get(symbol)
        if cached is not None and now - cached[1] < self._rules_ttl:
            return cached[0]
        call = _Call("GET", Endpoint.EXCHANGE_INFO, (("symbol", symbol),), False,
                     RequestContext("read exchangeInfo", symbol))
        data = await self._call(call)
        info = self._parse(call, lambda: BinanceExchangeInfo.model_validate(data))
        raw = next((s for s in info.symbols if s.symbol == symbol), None)
        if raw is None:
            raise ConfigurationError(f"Binance: exchangeInfo has no symbol {symbol}: check the configured symbols")
        rules = self._parse(call, lambda: symbol_rules_from_binance(raw))
        self._rules[symbol] = (rules, now)
        return rules

    async def get_klines(self, symbol: str, timeframe: Timeframe, limit: int) -> list[Candle]:
        """The last `limit` CLOSED candles: one extra is asked for because the newest is usually still open."""
        params = (("symbol", symbol), ("interval", timeframe.value), ("limit", str(min(limit + 1, MAX_KLINES))))
        call = _Call("GET", Endpoint.KLINES, params, False, RequestContext(f"read {timeframe.value} klines", symbol))
        data = await self._call(call)
        klines = self._parse(call, lambda: [BinanceKline.model_validate(k) for k in data])
        now_ms = self._time.server_now_ms()  # kept current by _call: a stale offset drops fresh candles
        closed = [candle_from_binance(k) for k in klines if k.close_time < now_ms]
        return closed[-limit:] if limit > 0 else []

    async def get_symbol_price(self, symbol: str) -> Decimal:
        call = _Call("GET", Endpoint.TICKER_PRICE, (("symbol", symbol),), False, RequestContext("read price", symbol))
        data = await self._call(call)
        return self._parse(call, lambda: BinanceTickerPrice.model_validate(data).price)

    async def get_balances(self) -> list[Balance]:
        call = _Call("GET", Endpoint.ACCOUNT, (("omitZeroBalances", "true"),), True, RequestContext("read account"))
        data = await self._call(call)
        account = self._parse(call, lambda: BinanceAccount.model_validate(data))
        return [balance_from_binance(b) for b in account.balances]

    async def get_account_balance(self, asset: str = "USDT") -> Balance:
        balances = await self.get_balances()
        return next((b for b in balances if b.asset == asset), Balance(asset, ZERO))

    # ------------------------------------------------------------ orders

    async def place_market_order(self, symbol: str, side: Side, quantity: Decimal, client_order_id: str) -> Order:
        """On an unknown outcome (timeout, 5xx) the order is looked up once by client id, never resent."""
        rules = await self.get_symbol_rules(symbol)
        context = RequestContext("place MARKET order", symbol, side.value, quantity,
                                 client_order_id=client_order_id, new_order=True)
        params = (("symbol", symbol), ("side", side.value), ("type", "MARKET"),
                  ("quantity", _on_grid(quantity, rules.step_size, "quantity", context)),
                  ("newClientOrderId", client_order_id), ("newOrderRespType", "FULL"))
        call = _Call("POST", Endpoint.ORDER, params, True, context)
        try:
            data = await self._call(call)
            return self._parse(call, lambda: order_from_binance(BinanceOrder.model_validate(data)))
        except OrderStatusUnknown as unknown:
            return await self._recovered(unknown, self.resolve_unknown_order(symbol, client_order_id))

    async def place_oco_order(
        self,
        symbol: str,
        quantity: Decimal,
        take_profit: Decimal,
        stop_price: Decimal,
        stop_limit_price: Decimal,
        list_client_order_id: str,
    ) -> OcoOrder:
        """SELL OCO: LIMIT_MAKER above at `take_profit`, STOP_LOSS_LIMIT below; unknown outcomes are looked up."""
        rules = await self.get_symbol_rules(symbol)
        prices = f"tp={take_profit} stop={stop_price} limit={stop_limit_price}"
        context = RequestContext("place OCO", symbol, "SELL", quantity, prices, list_client_order_id, new_order=True)
        tp_id, sl_id = oco_leg_client_ids(list_client_order_id)
        qty = _on_grid(quantity, rules.step_size, "quantity", context)
        tp = _on_grid(take_profit, rules.tick_size, "take profit", context)
        stop = _on_grid(stop_price, rules.tick_size, "stop", context)
        limit = _on_grid(stop_limit_price, rules.tick_size, "stop limit", context)
        params = (
            ("symbol", symbol), ("side", "SELL"), ("quantity", qty), ("listClientOrderId", list_client_order_id),
            ("aboveType", "LIMIT_MAKER"), ("abovePrice", tp), ("aboveClientOrderId", tp_id),
            ("belowType", "STOP_LOSS_LIMIT"), ("belowStopPrice", stop), ("belowPrice", limit),
            ("belowTimeInForce", "GTC"), ("belowClientOrderId", sl_id), ("newOrderRespType", "FULL"),
        )
        call = _Call("POST", Endpoint.ORDER_LIST_OCO, params, True, context)
        try:
            data = await self._call(call)
            return self._parse(call, lambda: oco_from_binance(BinanceOrderList.model_validate(data)))
        except OrderStatusUnknown as unknown:
            return await self._recovered(unknown, self.resolve_unknown_oco(symbol, list_client_order_id))

    async def get_order(self, symbol: str, client_order_id: str) -> Order:
        """The order with its fills (from myTrades when anything executed). Raises OrderNotFound."""
        params = (("symbol", symbol), ("origClientOrderId", client_order_id))
        return await self._query_order(params, RequestContext("query order", symbol, client_order_id=client_order_id))

    async def cancel_order(self, symbol: str, client_order_id: str) -> Order:
        params = (("symbol", symbol), ("origClientOrderId", client_order_id))
        call = _Call("DELETE", Endpoint.ORDER, params, True,
                     RequestContext("cancel order", symbol, client_order_id=client_order_id))
        data = await self._call(call)
        return self._parse(call, lambda: order_from_binance(BinanceOrder.model_validate(data)))

    async def get_oco_order_status(self, symbol: str, list_client_order_id: str) -> OcoOrder:
        """GET orderList has no leg statuses, so each leg is queried (with its trades once it executed)."""
        call = _Call("GET", Endpoint.ORDER_LIST, (("origClientOrderId", list_client_order_id),), True,
                     RequestContext("query OCO", symbol, client_order_id=list_client_order_id))
        data = await self._call(call)
        return await self._with_legs(self._parse(call, lambda: BinanceOrderList.model_validate(data)))

    async def cancel_oco_order(self, symbol: str, list_client_order_id: str) -> OcoOrder:
        params = (("symbol", symbol), ("listClientOrderId", list_client_order_id))
        call = _Call("DELETE", Endpoint.ORDER_LIST, params, True,
                     RequestContext("cancel OCO", symbol, client_order_id=list_client_order_id))
        data = await self._call(call)
        return self._parse(call, lambda: oco_from_binance(BinanceOrderList.model_validate(data)))

    async def get_open_oco_orders(self) -> list[OcoOrder]:
        call = _Call("GET", Endpoint.OPEN_ORDER_LIST, (), True, RequestContext("list open OCOs"))
        data = await self._call(call)
        lists = self._parse(call, lambda: [BinanceOrderList.model_validate(item) for item in data])
        return [await self._with_legs(raw) for raw in lists]

    async def resolve_unknown_order(self, symbol: str, client_order_id: str) -> Order | None:
        """After an unknown outcome: the order if the exchange has it, None if it does not (yet)."""
        try:
            return await self.get_order(symbol, client_order_id)
        except OrderNotFound:
            return None

    async def resolve_unknown_oco(self, symbol: str, list_client_order_id: str) -> OcoOrder | None:
        try:
            return await self.get_oco_order_status(symbol, list_client_order_id)
        except OrderNotFound:
            return None

    # ------------------------------------------------------------ order helpers

    async def _recovered(self, unknown: OrderStatusUnknown, lookup: Awaitable[T | None]) -> T:
        try:
            found = await lookup
        except TradingError as e:
            raise OrderStatusUnknown(f"{unknown}; the lookup by client id failed too: {e}", unknown.code) from e
        if found is None:
            raise unknown
        logger.warning("Binance: outcome was unknown, found by client id: %s", unknown)
        return found

    async def _query_order(self, params: tuple[tuple[str, str], ...], context: RequestContext) -> Order:
        call = _Call("GET", Endpoint.ORDER, params, True, context)
        data = await self._call(call)
        raw = self._parse(call, lambda: BinanceOrder.model_validate(data))
        trades = await self._trades(raw) if raw.executed_qty > 0 else []
        return self._parse(call, lambda: order_from_binance(raw, trades))

    async def _trades(self, raw: BinanceOrder) -> list[BinanceTrade]:
        params = (("symbol", raw.symbol), ("orderId", str(raw.order_id)))
        call = _Call("GET", Endpoint.MY_TRADES, params, True,
                     RequestContext("read trades", raw.symbol, client_order_id=raw.client_order_id))
        data = await self._call(call)
        return self._parse(call, lambda: [BinanceTrade.model_validate(t) for t in data])

    async def _with_legs(self, raw: BinanceOrderList) -> OcoOrder:
        legs = []
        for entry in raw.orders:
            params = (("symbol", entry.symbol), ("orderId", str(entry.order_id)))
            context = RequestContext("query OCO leg", entry.symbol, client_order_id=entry.client_order_id)
            legs.append(await self._query_order(params, context))
        return oco_from_binance(raw, legs)

    # ------------------------------------------------------------ transport

    def _parse(self, call: _Call, build: Callable[[], T]) -> T:
        """Run a parse/convert step; a malformed answer to a new order leaves its outcome unknown."""
        try:
            return build()
        except (ValueError, KeyError, TypeError) as e:
            text = f"Binance: {call.context.describe()} got a malformed answer: {redact(str(e), self._secret)[:300]}"
            error = OrderStatusUnknown if call.context.new_order else ExchangeError
            raise error(text) from e

    async def _call(self, call: _Call) -> Any:
        """Send with the weight and Retry-After rules; resync time when due and once on -1021; wait out one 429 on
        reads."""
        await self._keep_time_synced(call)
        resynced = waited = False
        while True:
            await self._wait_out_ban(call)
            await self._wait_for_weight(call)
            outcome = await self._send(call)
            if not isinstance(outcome, Failure):
                return outcome
            if outcome.code == -1021 and not resynced:
                resynced = True
                await self.sync_time()
                continue
            if outcome.is_rate_limit:
                self._block(outcome)
                if not waited and self._may_wait(call, outcome):
                    waited = True
                    continue
            raise to_exchange_error(outcome, call.context)

    async def _keep_time_synced(self, call: _Call) -> None:
        if call.path == Endpoint.TIME or not self._time.is_due():
            return
        try:
            await self.sync_time()
        except ExchangeError as e:  # the request itself will tell its caller whether the venue answers
            logger.warning("Binance: server time not resynced, keeping the offset of %d ms: %s",
                           self._time.offset_ms, e)

    def _may_wait(self, call: _Call, failure: Failure) -> bool:
        # a rejected new order is not retried here: the caller decides whether the trade is still wanted
        retry_after_s = failure.retry_after_s or 0.0
        return not call.context.new_order and retry_after_s <= self._max_retry_wait_s

    def _block(self, failure: Failure) -> None:
        retry_after_s = failure.retry_after_s if failure.retry_after_s is not None else DEFAULT_RETRY_AFTER_S
        self._blocked_until = self._clock.now() + timedelta(seconds=retry_after_s)
        logger.warning("Binance rate limit (%s): no requests for %.0f s", failure.describe(), retry_after_s)

    async def _wait_out_ban(self, call: _Call) -> None:
        if self._blocked_until is None:
            return
        remaining_s = (self._blocked_until - self._clock.now()).total_seconds()
        if remaining_s <= 0:
            self._blocked_until = None
            return
        if call.context.new_order or remaining_s > self._max_retry_wait_s:
            raise RateLimited(f"Binance: {call.context.describe()} not sent: rate limited for {remaining_s:.0f} s more",
                              remaining_s)
        await self._clock.sleep(remaining_s)
        self._blocked_until = None

    async def _wait_for_weight(self, call: _Call) -> None:
        now_ms = self._time.server_now_ms()
        minute = now_ms // MINUTE_MS
        if minute != self._weight_minute:
            return
        if self._used_weight + endpoint_weight(call.method, call.path) <= self._weight_threshold:
            return
        wait_s = ((minute + 1) * MINUTE_MS - now_ms) / 1000
        logger.warning("Binance weight %d of this minute used: waiting %.1f s", self._used_weight, wait_s)
        await self._clock.sleep(wait_s)
        self._used_weight = 0

    def _url(self, call: _Call) -> str:
        if call.signed:
            params = (*call.params, ("recvWindow", str(self._recv_window_ms)),
                      ("timestamp", str(self._time.server_now_ms())))
            return f"{self._base_url}{call.path}?{signed_query(params, self._secret)}"
        query = encode_params(call.params)
        return f"{self._base_url}{call.path}?{query}" if query else f"{self._base_url}{call.path}"

    async def _send(self, call: _Call) -> Any | Failure:
        headers = {API_KEY_HEADER: self._api_key} if call.signed else {}
        try:
            response = await self._http.request(call.method, self._url(call), headers=headers)
        except httpx.TransportError as e:
            failure = Failure(None, msg=f"{type(e).__name__} {redact(str(e), self._secret)}",
                              sent=not isinstance(e, _NOT_SENT))
            raise to_exchange_error(failure, call.context) from e
        self._note_weight(response)
        logger.debug("Binance %s %s -> %d, weight %d", call.method, call.path, response.status_code, self._used_weight)
        if response.is_success:
            return self._parse(call, lambda: json.loads(response.content, parse_float=Decimal))
        return self._failure(response)

    def _note_weight(self, response: httpx.Response) -> None:
        used = response.headers.get(USED_WEIGHT_HEADER)
        if used is not None and used.isdigit():
            self._used_weight = int(used)
            self._weight_minute = self._time.server_now_ms() // MINUTE_MS

    def _failure(self, response: httpx.Response) -> Failure:
        code, msg = None, response.reason_phrase
        try:
            body = BinanceErrorBody.model_validate_json(response.content)
            code, msg = body.code, body.msg
        except ValueError:
            pass  # 5xx pages from a proxy are not JSON; the status says enough
        return Failure(response.status_code, code, redact(msg, self._secret), _retry_after_s(response))

