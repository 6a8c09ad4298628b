"""Binance REST transport: signing, server time, request weight, Retry-After bans, sending and error translation."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import httpx

from app.domain.clock import Clock
from app.domain.errors import ExchangeError, OrderStatusUnknown, RateLimited
from app.venues.binance.errors import DEFAULT_RETRY_AFTER_S, Failure, RequestContext, redact, to_exchange_error
from app.venues.binance.models import BinanceErrorBody, BinanceServerTime
from app.venues.binance.protocol import (
    API_KEY_HEADER,
    DEFAULT_RECV_WINDOW_MS,
    MAX_RECV_WINDOW_MS,
    MINUTE_MS,
    RETRY_AFTER_HEADER,
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
class Call:
    """One REST request: what to send, whether to sign it, and what it is for (in error messages)."""

    method: str
    path: str
    params: tuple[tuple[str, str], ...]
    signed: bool
    context: RequestContext


def _retry_after_s(response: httpx.Response) -> float | None:
    try:
        return float(response.headers[RETRY_AFTER_HEADER])
    except (KeyError, ValueError):
        return None


class BinanceTransport:
    """Sends one key's requests to one Binance venue and answers with parsed JSON or one of our errors."""

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
        self._weight_headroom = weight_headroom
        self._weight_threshold = weight_limit * weight_headroom
        self._max_retry_wait_s = max_retry_wait_s
        self._time = time_sync or ServerTimeSync(clock)
        self._used_weight = 0
        self._weight_minute = -1
        self._blocked_until: datetime | None = None
        install_log_redaction()

    @property
    def time_offset_ms(self) -> int:
        return self._time.offset_ms

    @property
    def used_weight(self) -> int:
        return self._used_weight

    def server_now_ms(self) -> int:
        return self._time.server_now_ms()

    def use_weight_limit(self, weight_limit: int) -> None:
        """The venue's REQUEST_WEIGHT per minute (from exchangeInfo.rateLimits), instead of the one assumed."""
        self._weight_threshold = weight_limit * self._weight_headroom

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

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
        call = Call("GET", Endpoint.TIME, (), False, RequestContext("read server time"))
        data = await self.request(call)
        return self.parse(call, lambda: BinanceServerTime.model_validate(data).server_time)

    def parse(self, call: Call, build: Callable[[], T]) -> T:
        """Run a parse/convert step; a malformed answer to a new order leaves its outcome unknown."""
        try:
            return build()
        except (ValueError, KeyError, TypeError) as e:
            text = f"Binance: {call.context.describe()} got a malformed answer: {redact(str(e), self._secret)[:300]}"
            error = OrderStatusUnknown if call.context.new_order else ExchangeError
            raise error(text) from e

    async def request(self, call: Call) -> Any:
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

    async def _keep_time_synced(self, call: Call) -> None:
        if call.path == Endpoint.TIME or not self._time.is_due():
            return
        try:
            await self.sync_time()
        except ExchangeError as e:  # the request itself will tell its caller whether the venue answers
            logger.warning("Binance: server time not resynced, keeping the offset of %d ms: %s",
                           self._time.offset_ms, e)

    def _may_wait(self, call: Call, failure: Failure) -> bool:
        # a rejected new order is not retried here: the caller decides whether the trade is still wanted
        retry_after_s = failure.retry_after_s or 0.0
        return not call.context.new_order and retry_after_s <= self._max_retry_wait_s

    def _block(self, failure: Failure) -> None:
        retry_after_s = failure.retry_after_s if failure.retry_after_s is not None else DEFAULT_RETRY_AFTER_S
        self._blocked_until = self._clock.now() + timedelta(seconds=retry_after_s)
        logger.warning("Binance rate limit (%s): no requests for %.0f s", failure.describe(), retry_after_s)

    async def _wait_out_ban(self, call: Call) -> None:
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

    async def _wait_for_weight(self, call: Call) -> None:
        now_ms = self._time.server_now_ms()
        minute = now_ms // MINUTE_MS
        if minute != self._weight_minute:
            return
        if self._used_weight + endpoint_weight(call.method, call.path, dict(call.params)) <= self._weight_threshold:
            return
        wait_s = ((minute + 1) * MINUTE_MS - now_ms) / 1000
        logger.warning("Binance weight %d of this minute used: waiting %.1f s", self._used_weight, wait_s)
        await self._clock.sleep(wait_s)
        self._used_weight = 0

    def _url(self, call: Call) -> str:
        if call.signed:
            params = (*call.params, ("recvWindow", str(self._recv_window_ms)),
                      ("timestamp", str(self._time.server_now_ms())))
            return f"{self._base_url}{call.path}?{signed_query(params, self._secret)}"
        query = encode_params(call.params)
        return f"{self._base_url}{call.path}?{query}" if query else f"{self._base_url}{call.path}"

    async def _send(self, call: Call) -> Any | Failure:
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
            return self.parse(call, lambda: json.loads(response.content, parse_float=Decimal))
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
