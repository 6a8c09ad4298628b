"""Binance's public market data for downloads (no API key): exchangeInfo as sent, and closed klines by time range."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx

from app.domain.clock import Clock, utc_from_ms
from app.domain.errors import ConfigurationError, RateLimited, TemporaryExchangeError
from app.domain.values import Candle, Timeframe
from app.venues.binance.errors import RequestContext
from app.venues.binance.models import BinanceKline, BinanceRateLimits, candle_from_binance
from app.venues.binance.protocol import MAX_KLINES, Endpoint
from app.venues.binance.transport import BinanceTransport, Call

UNKNOWN_SYMBOL = -1121
RETRY_BACKOFF_S = 2.0  # before the second try of a temporary failure; doubled for each further one


class BinancePublicData:
    """Unsigned reads from one Binance venue. Its transport paces them by the weight headers against the venue's
    REQUEST_WEIGHT limit (read from exchangeInfo) and waits out a 429's Retry-After; what stays temporary (5xx,
    no answer, a further 429) is tried `attempts` times in all."""

    def __init__(self, base_url: str, clock: Clock, http: httpx.AsyncClient | None = None, *, timeout_s: float = 30.0,
                 max_retry_wait_s: float = 600.0, attempts: int = 4) -> None:
        self._transport = BinanceTransport("", "", base_url, clock, http, timeout_s=timeout_s,
                                           max_retry_wait_s=max_retry_wait_s)
        self._base_url = base_url
        self._clock = clock
        self._max_retry_wait_s = max_retry_wait_s
        self._attempts = attempts

    def server_now_ms(self) -> int:
        return self._transport.server_now_ms()

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def exchange_info(self, symbols: Sequence[str]) -> dict[str, Any]:
        """exchangeInfo of `symbols`, as Binance sent it. An unknown symbol is a ConfigurationError naming it."""
        try:
            data = await self._exchange_info(symbols)
        except ConfigurationError as e:
            raise await self._naming_unknown(symbols, e) from e
        limits = self._transport.parse(self._info_call(symbols), lambda: BinanceRateLimits.model_validate(data))
        weight_limit = limits.request_weight_per_minute()
        if weight_limit is not None:
            self._transport.use_weight_limit(weight_limit)
        return data

    async def klines(self, symbol: str, timeframe: Timeframe, start_ms: int, end_ms: int, limit: int) -> list[Candle]:
        """Closed candles opening in [start_ms, end_ms), oldest first, at most `limit` (up to 1000)."""
        params = (("symbol", symbol), ("interval", timeframe.value), ("startTime", str(start_ms)),
                  ("endTime", str(end_ms - 1)), ("limit", str(min(limit, MAX_KLINES))))
        action = f"read {timeframe.value} klines from {utc_from_ms(start_ms).isoformat()}"
        call = Call("GET", Endpoint.KLINES, params, False, RequestContext(action, symbol))
        data = await self._request(call)
        klines = self._transport.parse(call, lambda: [BinanceKline.model_validate(k) for k in data])
        now_ms = self._transport.server_now_ms()  # the newest kline is usually still open: it is not kept
        return [candle_from_binance(k) for k in klines if k.close_time < now_ms]

    def _info_call(self, symbols: Sequence[str]) -> Call:
        listed = json.dumps(list(symbols), separators=(",", ":"))
        return Call("GET", Endpoint.EXCHANGE_INFO, (("symbols", listed),), False,
                    RequestContext("read exchangeInfo", ",".join(symbols)))

    async def _exchange_info(self, symbols: Sequence[str]) -> Any:
        return await self._request(self._info_call(symbols))

    async def _naming_unknown(self, symbols: Sequence[str], error: ConfigurationError) -> ConfigurationError:
        """Binance refuses a whole list for one unknown symbol (-1121) without saying which: each is asked alone."""
        if f"code {UNKNOWN_SYMBOL}" not in str(error):  # the error tree's ConfigurationError keeps codes in its text
            return error
        unknown = list(symbols) if len(symbols) == 1 else [s for s in symbols if not await self._is_known(s)]
        if not unknown:
            return error
        return ConfigurationError(f"unknown symbol {', '.join(unknown)}: {self._base_url} does not list it "
                                  f"(Binance error {UNKNOWN_SYMBOL} Invalid symbol)")

    async def _is_known(self, symbol: str) -> bool:
        try:
            await self._exchange_info([symbol])
        except ConfigurationError:
            return False
        return True

    async def _request(self, call: Call) -> Any:
        for attempt in range(1, self._attempts + 1):
            try:
                return await self._transport.request(call)
            except RateLimited as e:  # the transport waits out the ban before the next try, if it is short enough
                if attempt == self._attempts or e.retry_after_s > self._max_retry_wait_s:
                    raise
            except TemporaryExchangeError:
                if attempt == self._attempts:
                    raise
                await self._clock.sleep(RETRY_BACKOFF_S * 2 ** (attempt - 1))
        raise AssertionError("unreachable: the last attempt returns or raises")
