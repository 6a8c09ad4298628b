"""BinanceService: the ExchangeAdapter for Binance spot over our own async httpx client."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TypeVar

import httpx

from app.domain.clock import Clock
from app.domain.errors import (
    ConfigurationError,
    OrderNotFound,
    OrderRejected,
    OrderStatusUnknown,
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
from app.venues.binance.errors import RequestContext
from app.venues.binance.models import (
    BinanceAccount,
    BinanceExchangeInfo,
    BinanceKline,
    BinanceOrder,
    BinanceOrderList,
    BinanceTicker24h,
    BinanceTickerPrice,
    BinanceTrade,
    balance_from_binance,
    candle_from_binance,
    oco_from_binance,
    order_from_binance,
    symbol_rules_from_binance,
)
from app.venues.binance.protocol import (
    DEFAULT_RECV_WINDOW_MS,
    MAX_KLINES,
    PRODUCTION_BASE_URL,
    TESTNET_BASE_URL,
    Endpoint,
)
from app.venues.binance.server_time import ServerTimeSync
from app.venues.binance.transport import BinanceTransport, Call

logger = logging.getLogger(__name__)
T = TypeVar("T")


def default_base_url(testnet: bool) -> str:
    return TESTNET_BASE_URL if testnet else PRODUCTION_BASE_URL


def _on_grid(value: Decimal, quantum: Decimal, name: str, context: RequestContext) -> str:
    """Plain text on the quantum's decimals; off-grid values are the caller's bug, refused before sending."""
    if value <= 0 or value % quantum != 0:
        raise OrderRejected(f"Binance: {context.describe()} not sent: {name} {value} is not a positive multiple "
                            f"of {format_decimal(quantum)}")
    return format_decimal(value, quantum)


async def _recovered(unknown: OrderStatusUnknown, lookup: Awaitable[T | None]) -> T:
    try:
        found = await lookup
    except TradingError as e:
        raise OrderStatusUnknown(f"{unknown}; the lookup by client id failed too: {e}", unknown.code) from e
    if found is None:
        raise unknown
    logger.warning("Binance: outcome was unknown, found by client id: %s", unknown)
    return found


class BinanceService:
    """One Binance account. Implements `ExchangeAdapter`; see reference/binance-spot-api.md for the wire facts.

    The wire (signing, server time, weight, Retry-After, error translation) is its `BinanceTransport`, built from
    the arguments below; `http` is where tests put a fake venue.
    """

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
        self._transport = BinanceTransport(api_key, api_secret, base_url, clock, http, recv_window_ms, weight_limit,
                                           weight_headroom, timeout_s, max_retry_wait_s, time_sync)
        self._orders = _OrderReader(self._transport)
        self._clock = clock
        self._rules_ttl = timedelta(seconds=rules_ttl_s)
        self._rules: dict[str, tuple[SymbolRules, datetime]] = {}

    @property
    def time_offset_ms(self) -> int:
        return self._transport.time_offset_ms

    @property
    def used_weight(self) -> int:
        return self._transport.used_weight

    async def aclose(self) -> None:
        await self._transport.aclose()

    # ------------------------------------------------------------ market data

    async def sync_time(self) -> int:
        """Measure the server clock offset (added to every `timestamp`, shared by the venue's clients); returns it."""
        return await self._transport.sync_time()

    async def server_time_ms(self) -> int:
        """The venue's clock (GET /api/v3/time), e.g. for a market clock that follows the venue."""
        return await self._transport.server_time_ms()

    async def get_symbol_rules(self, symbol: str) -> SymbolRules:
        now = self._clock.now()
        cached = self._rules.get(symbol)
        if cached is not None and now - cached[1] < self._rules_ttl:
            return cached[0]
        call = Call("GET", Endpoint.EXCHANGE_INFO, (("symbol", symbol),), False,
                    RequestContext("read exchangeInfo", symbol))
        data = await self._transport.request(call)
        info = self._transport.parse(call, lambda: BinanceExchangeInfo.model_validate(data))
        raw = next((s for s in info.symbols if s.symbol == symbol), None)
        if raw is None:
            raise ConfigurationError(f"Binance: exchangeInfo has no symbol {symbol}: check the configured symbols")
        rules = self._transport.parse(call, lambda: symbol_rules_from_binance(raw))
        self._rules[symbol] = (rules, now)
        return rules

    async def get_exchange_rules(self) -> dict[str, SymbolRules]:
        """Every listed symbol's rules (one exchangeInfo read, weight 20); each symbol's cached rules are renewed."""
        call = Call("GET", Endpoint.EXCHANGE_INFO, (), False, RequestContext("read exchangeInfo"))
        data = await self._transport.request(call)
        info = self._transport.parse(call, lambda: BinanceExchangeInfo.model_validate(data))
        rules = self._transport.parse(call, lambda: {raw.symbol: symbol_rules_from_binance(raw) for raw in info.symbols})
        now = self._clock.now()
        self._rules.update({symbol: (found, now) for symbol, found in rules.items()})
        return rules

    async def get_24h_quote_volumes(self) -> dict[str, Decimal]:
        """Every symbol's quote volume over the last 24 hours (GET ticker/24hr, weight 80)."""
        call = Call("GET", Endpoint.TICKER_24HR, (("type", "MINI"),), False, RequestContext("read 24 h tickers"))
        data = await self._transport.request(call)
        tickers = self._transport.parse(call, lambda: [BinanceTicker24h.model_validate(t) for t in data])
        return {t.symbol: t.quote_volume for t in tickers}

    async def get_klines(self, symbol: str, timeframe: Timeframe, limit: int) -> list[Candle]:
        """The last `limit` CLOSED candles: one extra is asked for because the newest is usually still open."""
        params = (("symbol", symbol), ("interval", timeframe.value), ("limit", str(min(limit + 1, MAX_KLINES))))
        call = Call("GET", Endpoint.KLINES, params, False, RequestContext(f"read {timeframe.value} klines", symbol))
        data = await self._transport.request(call)
        klines = self._transport.parse(call, lambda: [BinanceKline.model_validate(k) for k in data])
        now_ms = self._transport.server_now_ms()  # kept current by request(): a stale offset drops fresh candles
        closed = [candle_from_binance(k) for k in klines if k.close_time < now_ms]
        return closed[-limit:] if limit > 0 else []

    async def get_klines_between(self, symbol: str, timeframe: Timeframe, start_ms: int, end_ms: int) -> list[Candle]:
        """The CLOSED candles opening in [start_ms, end_ms), oldest first, in as many reads of 1000 as that takes."""
        found: list[Candle] = []
        next_ms: int | None = start_ms
        while next_ms is not None and next_ms < end_ms:
            page, next_ms = await self._klines_page(symbol, timeframe, next_ms, end_ms)
            found.extend(page)
        return found

    async def _klines_page(self, symbol: str, timeframe: Timeframe, start_ms: int,
                           end_ms: int) -> tuple[list[Candle], int | None]:
        """One read of up to 1000 klines: the closed ones, and where the next read starts if this one was full."""
        params = (("symbol", symbol), ("interval", timeframe.value), ("startTime", str(start_ms)),
                  ("endTime", str(end_ms - 1)), ("limit", str(MAX_KLINES)))
        call = Call("GET", Endpoint.KLINES, params, False, RequestContext(f"read {timeframe.value} klines", symbol))
        data = await self._transport.request(call)
        klines = self._transport.parse(call, lambda: [BinanceKline.model_validate(k) for k in data])
        now_ms = self._transport.server_now_ms()
        closed = [candle_from_binance(k) for k in klines if k.close_time < now_ms]
        return closed, (klines[-1].open_time + timeframe.ms if len(klines) >= MAX_KLINES else None)

    async def get_symbol_price(self, symbol: str) -> Decimal:
        call = Call("GET", Endpoint.TICKER_PRICE, (("symbol", symbol),), False, RequestContext("read price", symbol))
        data = await self._transport.request(call)
        return self._transport.parse(call, lambda: BinanceTickerPrice.model_validate(data).price)

    async def get_balances(self) -> list[Balance]:
        call = Call("GET", Endpoint.ACCOUNT, (("omitZeroBalances", "true"),), True, RequestContext("read account"))
        data = await self._transport.request(call)
        account = self._transport.parse(call, lambda: BinanceAccount.model_validate(data))
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
        call = Call("POST", Endpoint.ORDER, params, True, context)
        try:
            data = await self._transport.request(call)
            return self._transport.parse(call, lambda: order_from_binance(BinanceOrder.model_validate(data)))
        except OrderStatusUnknown as unknown:
            return await _recovered(unknown, self.resolve_unknown_order(symbol, client_order_id))

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
        call = Call("POST", Endpoint.ORDER_LIST_OCO, params, True, context)
        try:
            data = await self._transport.request(call)
            return self._transport.parse(call, lambda: oco_from_binance(BinanceOrderList.model_validate(data)))
        except OrderStatusUnknown as unknown:
            return await _recovered(unknown, self.resolve_unknown_oco(symbol, list_client_order_id))

    async def get_order(self, symbol: str, client_order_id: str) -> Order:
        """The order with its fills (from myTrades when anything executed). Raises OrderNotFound."""
        params = (("symbol", symbol), ("origClientOrderId", client_order_id))
        return await self._orders.read(params, RequestContext("query order", symbol, client_order_id=client_order_id))

    async def cancel_order(self, symbol: str, client_order_id: str) -> Order:
        params = (("symbol", symbol), ("origClientOrderId", client_order_id))
        call = Call("DELETE", Endpoint.ORDER, params, True,
                    RequestContext("cancel order", symbol, client_order_id=client_order_id))
        data = await self._transport.request(call)
        return self._transport.parse(call, lambda: order_from_binance(BinanceOrder.model_validate(data)))

    async def get_oco_order_status(self, symbol: str, list_client_order_id: str) -> OcoOrder:
        """GET orderList has no leg statuses, so each leg is queried (with its trades once it executed)."""
        call = Call("GET", Endpoint.ORDER_LIST, (("origClientOrderId", list_client_order_id),), True,
                    RequestContext("query OCO", symbol, client_order_id=list_client_order_id))
        data = await self._transport.request(call)
        raw = self._transport.parse(call, lambda: BinanceOrderList.model_validate(data))
        return await self._orders.with_legs(raw)

    async def cancel_oco_order(self, symbol: str, list_client_order_id: str) -> OcoOrder:
        params = (("symbol", symbol), ("listClientOrderId", list_client_order_id))
        call = Call("DELETE", Endpoint.ORDER_LIST, params, True,
                    RequestContext("cancel OCO", symbol, client_order_id=list_client_order_id))
        data = await self._transport.request(call)
        return self._transport.parse(call, lambda: oco_from_binance(BinanceOrderList.model_validate(data)))

    async def get_open_oco_orders(self) -> list[OcoOrder]:
        call = Call("GET", Endpoint.OPEN_ORDER_LIST, (), True, RequestContext("list open OCOs"))
        data = await self._transport.request(call)
        lists = self._transport.parse(call, lambda: [BinanceOrderList.model_validate(item) for item in data])
        return [await self._orders.with_legs(raw) for raw in lists]

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


class _OrderReader:
    """Reads orders with their fills (from myTrades once anything executed) and order lists with their legs."""

    def __init__(self, transport: BinanceTransport) -> None:
        self._transport = transport

    async def read(self, params: tuple[tuple[str, str], ...], context: RequestContext) -> Order:
        call = Call("GET", Endpoint.ORDER, params, True, context)
        data = await self._transport.request(call)
        raw = self._transport.parse(call, lambda: BinanceOrder.model_validate(data))
        trades = await self._trades(raw) if raw.executed_qty > 0 else []
        return self._transport.parse(call, lambda: order_from_binance(raw, trades))

    async def _trades(self, raw: BinanceOrder) -> list[BinanceTrade]:
        params = (("symbol", raw.symbol), ("orderId", str(raw.order_id)))
        call = Call("GET", Endpoint.MY_TRADES, params, True,
                    RequestContext("read trades", raw.symbol, client_order_id=raw.client_order_id))
        data = await self._transport.request(call)
        return self._transport.parse(call, lambda: [BinanceTrade.model_validate(t) for t in data])

    async def with_legs(self, raw: BinanceOrderList) -> OcoOrder:
        legs = []
        for entry in raw.orders:
            params = (("symbol", entry.symbol), ("orderId", str(entry.order_id)))
            context = RequestContext("query OCO leg", entry.symbol, client_order_id=entry.client_order_id)
            legs.append(await self.read(params, context))
        return oco_from_binance(raw, legs)
