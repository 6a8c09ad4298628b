"""The Binance-compatible HTTP simulator (`trdbot exchange-sim`): its request pipeline and the ASGI app serving it."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.devtools.api_errors import BinanceApiError, server_error
from app.devtools.authentication import ApiAccount, ApiKeys
from app.devtools.fault_stages import DroppedResponse, FaultStages
from app.devtools.faults import FaultKind, FaultPlan, FaultRule
from app.devtools.market_endpoints import MarketDataEndpoints
from app.devtools.market_lookup import MarketLookup
from app.devtools.order_endpoints import ORDER_TEST_PATH, OrderEndpoints
from app.devtools.order_list_endpoints import OrderListEndpoints
from app.devtools.request_limits import RequestLimits
from app.devtools.request_params import Handler, RequestContext
from app.domain.clock import Clock, ms_from_utc
from app.venues.binance.protocol import API_KEY_HEADER, SIGNED_ENDPOINTS, Endpoint, endpoint_weight, parse_params
from app.venues.paper.accounts import InMemorySimAccountStore, SimAccountStore
from app.venues.paper.exchange import MockBinanceService
from app.venues.paper.market import SimulatedMarket

__all__ = ["ApiAccount", "ExchangeSimulator", "RequestRecord", "create_simulator_app"]

logger = logging.getLogger(__name__)
_SIGNED = frozenset({*SIGNED_ENDPOINTS, ORDER_TEST_PATH})


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
        self._keys = ApiKeys(accounts, market, clock, store or InMemorySimAccountStore(), check_timestamps)
        self.market = market
        self.clock = clock
        self.faults = faults or FaultPlan()
        self.requests: deque[RequestRecord] = deque(maxlen=keep_requests)
        self._limits = RequestLimits(weight_limit)
        self._stages = FaultStages(self.faults, self._limits)
        self._ids = itertools.count(1)
        self._routes = self._route_table(MarketLookup(market))

    async def open(self) -> None:
        """Open (and fund, the first time) every account; idempotent."""
        await self._keys.open()

    def account(self, api_key: str) -> MockBinanceService:
        """The simulated exchange behind a key (for tests and tools; call after `open`)."""
        return self._keys.account(api_key)

    def _route_table(self, lookup: MarketLookup) -> dict[tuple[str, str], Handler]:
        market = MarketDataEndpoints(lookup, self._limits.weight_limit)
        orders = OrderEndpoints(lookup, self._generated_id)
        lists = OrderListEndpoints(lookup, self._generated_id)
        return {
            ("GET", Endpoint.PING): market.ping, ("GET", Endpoint.TIME): market.time,
            ("GET", Endpoint.EXCHANGE_INFO): market.exchange_info, ("GET", Endpoint.KLINES): market.klines,
            ("GET", Endpoint.TICKER_PRICE): market.ticker_price, ("GET", Endpoint.TICKER_24HR): market.ticker_24hr,
            ("GET", Endpoint.ACCOUNT): orders.account,
            ("POST", Endpoint.ORDER): orders.new_order, ("POST", ORDER_TEST_PATH): orders.test_order,
            ("GET", Endpoint.ORDER): orders.query_order, ("DELETE", Endpoint.ORDER): orders.cancel_order,
            ("GET", Endpoint.OPEN_ORDERS): orders.open_orders, ("GET", Endpoint.MY_TRADES): orders.my_trades,
            ("POST", Endpoint.ORDER_LIST_OCO): lists.new_oco, ("GET", Endpoint.ORDER_LIST): lists.query_order_list,
            ("DELETE", Endpoint.ORDER_LIST): lists.cancel_order_list,
            ("GET", Endpoint.OPEN_ORDER_LIST): lists.open_order_lists,
        }

    async def handle(self, request: Request) -> Response:
        """Weight and bans, faults before, authentication, the handler, faults after; one record per request."""
        method, path = request.method, request.url.path
        handler = self._routes.get((method, path))
        if handler is None:
            return self._finish(request, 404, {"code": -1000, "msg": f"The simulator does not serve {method} {path}"})
        try:
            delayed_by = await self._before(method, path, _weight(request))
            context = await self._context(request)
            context.fill_ratio = self._stages.fill_ratio(method, path)
            body = await handler(context)
        except BinanceApiError as e:
            return self._finish(request, e.status, {"code": e.code, "msg": e.msg}, e.headers, e.fault)
        fault = self._stages.after(method, path)
        if fault is not None:
            return await self._after_fault(request, fault, body)
        return self._finish(request, 200, body, fault=delayed_by)

    async def _before(self, method: str, path: str, weight: int) -> FaultRule | None:
        """Bans, weight and the faults that stop a request from running; returns a latency fault that slowed it."""
        now_ms = self._now_ms()
        self._limits.check(weight, now_ms)
        return await self._stages.before(method, path, now_ms)

    async def _context(self, request: Request) -> RequestContext:
        query = request.scope.get("query_string", b"").decode("latin-1")
        body = (await request.body()).decode("latin-1")
        params = parse_params(query, body)
        context = RequestContext(request.method, request.url.path, params, self._now_ms())
        if request.url.path in _SIGNED:
            context.service = self._keys.authenticate(request.headers.get(API_KEY_HEADER), query, body, params)
        return context

    async def _after_fault(self, request: Request, rule: FaultRule, body: Any) -> Response:
        logger.warning("simulator: %s after executing %s %s", rule.kind, request.method, request.url.path)
        if rule.kind is FaultKind.SERVER_ERROR:
            error = server_error(rule)
            return self._finish(request, error.status, {"code": error.code, "msg": error.msg}, fault=rule)
        self._record(request, 200, None, rule)
        if rule.drop:
            return DroppedResponse()
        await asyncio.sleep(rule.delay_s)  # the client has given up by now; the late answer goes nowhere
        return JSONResponse(body, headers=self._limits.headers())

    def _finish(self, request: Request, status: int, body: Any, headers: Mapping[str, str] | None = None,
                fault: FaultRule | None = None) -> Response:
        self._limits.charge(request.method, request.url.path, _weight(request), status, self._now_ms())
        code = body.get("code") if isinstance(body, dict) and status != 200 else None
        self._record(request, status, code, fault)
        return JSONResponse(body, status_code=status, headers={**(headers or {}), **self._limits.headers()})

    def _record(self, request: Request, status: int, code: int | None, rule: FaultRule | None) -> None:
        self.requests.append(RequestRecord(self.clock.now(), request.method, request.url.path, status, code,
                                           rule.kind.value if rule is not None else None,
                                           request.headers.get(API_KEY_HEADER)))

    def _now_ms(self) -> int:
        return ms_from_utc(self.clock.now())

    def _generated_id(self) -> str:
        return f"sim{next(self._ids):012d}"


def _weight(request: Request) -> int:
    """The request's weight, which for the tickers depends on the symbols asked for."""
    params = parse_params(request.scope.get("query_string", b"").decode("latin-1"))
    return endpoint_weight(request.method, request.url.path, params)


def create_simulator_app(simulator: ExchangeSimulator) -> Starlette:
    """The HTTP app: every path goes through `ExchangeSimulator.handle`; accounts open at start-up."""

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await simulator.open()
        yield

    methods = ["GET", "POST", "PUT", "DELETE"]
    return Starlette(routes=[Route("/{path:path}", simulator.handle, methods=methods)], lifespan=lifespan)
