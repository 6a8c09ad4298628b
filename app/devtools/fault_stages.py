"""Injected faults at their stages: before a request runs, while it executes, and on its answer afterwards."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.devtools.api_errors import BinanceApiError, server_error
from app.devtools.faults import FaultKind, FaultPlan, FaultRule, FaultStage
from app.devtools.request_limits import RequestLimits
from app.venues.binance.protocol import RETRY_AFTER_HEADER, Endpoint


class FaultStages:
    """A fault plan's rules applied to one request at each stage; a rate limit or a ban lasts on the request limits."""

    def __init__(self, plan: FaultPlan, limits: RequestLimits) -> None:
        self._plan = plan
        self._limits = limits

    async def before(self, method: str, path: str, now_ms: int) -> FaultRule | None:
        """The faults that stop a request from running; returns a latency fault that slowed it."""
        delayed_by = None
        for rule in self._plan.take(method, path, FaultStage.BEFORE):
            await self._apply_before(rule, now_ms)
            delayed_by = rule  # only a latency fault returns from _apply_before
        return delayed_by

    async def _apply_before(self, rule: FaultRule, now_ms: int) -> None:
        if rule.kind is FaultKind.LATENCY:
            await asyncio.sleep(rule.delay_s)  # wall time on purpose: it is the network that is slow
            return
        if rule.kind is FaultKind.RATE_LIMIT:
            # Binance bans an IP that keeps sending inside the Retry-After window
            self._limits.ban(now_ms + rule.retry_after_s * 1000)
            raise BinanceApiError(-1003, status=429, headers={RETRY_AFTER_HEADER: str(rule.retry_after_s)}, fault=rule)
        if rule.kind is FaultKind.BAN:
            self._limits.ban(now_ms + rule.retry_after_s * 1000)
            raise BinanceApiError(-1003, "IP banned until further notice (simulated).", 418,
                                  {RETRY_AFTER_HEADER: str(rule.retry_after_s)}, rule)
        if rule.kind is FaultKind.SERVER_ERROR:
            raise server_error(rule)
        if rule.kind is FaultKind.REJECT:
            raise BinanceApiError(rule.code or -2010, rule.msg, fault=rule)

    def fill_ratio(self, method: str, path: str) -> Decimal | None:
        """The share of a MARKET order's quantity that fills, where a partial-fill fault hits it."""
        if (method, path) != ("POST", Endpoint.ORDER):
            return None
        rules = self._plan.take(method, path, FaultStage.DURING)
        return rules[0].fill_ratio if rules else None

    def after(self, method: str, path: str) -> FaultRule | None:
        """The fault that replaces the answer of a request that ran, if one hits it."""
        rules = self._plan.take(method, path, FaultStage.AFTER)
        return rules[0] if rules else None


class DroppedResponse(Response):
    """Starts an answer and hangs up mid-body: the client sees the connection drop after the work was done."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"4096")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"symbol":', "more_body": True})
