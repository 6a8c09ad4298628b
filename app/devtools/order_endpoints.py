"""The simulator's account and order endpoints: balances, MARKET orders (placed, tested, queried, canceled), trades."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from app.devtools.api_errors import BinanceApiError, exchange_call
from app.devtools.market_lookup import MarketLookup
from app.devtools.request_params import (
    RequestContext,
    decimal_param,
    flag_param,
    int_param,
    limit_param,
    required,
    side_param,
)
from app.domain.values import Order, OrderType, Side
from app.venues.binance.protocol import (
    account_json,
    canceled_order_json,
    my_trades_json,
    order_json,
    queried_order_json,
)

ORDER_TEST_PATH = "/api/v3/order/test"


class OrderEndpoints:
    """What a signed request does to its account's orders; client order ids not sent are generated."""

    def __init__(self, lookup: MarketLookup, next_id: Callable[[], str]) -> None:
        self._lookup = lookup
        self._next_id = next_id

    async def account(self, context: RequestContext) -> Any:
        balances = await context.account.get_balances()
        return account_json(balances, context.now_ms, omit_zero=flag_param(context.params, "omitZeroBalances"))

    async def new_order(self, context: RequestContext) -> Any:
        params = context.params
        symbol, side, quantity = self._market_order_params(params)
        client_order_id = params.get("newClientOrderId") or self._next_id()
        available = quantity * context.fill_ratio if context.fill_ratio is not None else None
        order = await exchange_call(context.account.place_market_order(
            symbol, side, quantity, client_order_id, available_qty=available))
        return _order_answer(order, params.get("newOrderRespType", "FULL"))

    async def test_order(self, context: RequestContext) -> Any:
        self._market_order_params(context.params)
        return {}

    def _market_order_params(self, params: Mapping[str, str]) -> tuple[str, Side, Decimal]:
        symbol = self._lookup.symbol(params)
        side = side_param(params)
        order_type = required(params, "type")
        if order_type != OrderType.MARKET:
            raise BinanceApiError(-1013, f"The simulator accepts MARKET orders only (got {order_type}); "
                                         "exits go through POST /api/v3/orderList/oco.")
        if "quantity" not in params and "quoteOrderQty" in params:
            raise BinanceApiError(-1013, "The simulator does not support quoteOrderQty; send quantity.")
        return symbol, side, decimal_param(params, "quantity")

    async def query_order(self, context: RequestContext) -> Any:
        return queried_order_json(await self._find_order(context, -2013))

    async def cancel_order(self, context: RequestContext) -> Any:
        order = await self._find_order(context, -2011)
        canceled = await exchange_call(context.account.cancel_order(order.symbol, order.client_order_id), -2011)
        return canceled_order_json(canceled, context.params.get("newClientOrderId") or self._next_id())

    async def open_orders(self, context: RequestContext) -> Any:
        symbol = self._lookup.symbol(context.params) if "symbol" in context.params else None
        orders = await context.account.list_orders()
        return [queried_order_json(o) for o in orders
                if not o.status.is_final and symbol in (None, o.symbol)]

    async def my_trades(self, context: RequestContext) -> Any:
        params = context.params
        symbol = self._lookup.symbol(params)
        order_id = int_param(params, "orderId", None)
        orders = [o for o in await context.account.list_orders()
                  if o.symbol == symbol and order_id in (None, o.order_id)]
        trades = [t for o in orders for t in my_trades_json(o, is_maker=o.type is OrderType.LIMIT_MAKER)]
        from_id = int_param(params, "fromId", 0)
        limit = limit_param(params)
        return sorted((t for t in trades if t["id"] >= from_id), key=lambda t: t["id"])[:limit]

    async def _find_order(self, context: RequestContext, not_found_code: int) -> Order:
        params = context.params
        symbol = self._lookup.symbol(params)
        order_id = int_param(params, "orderId", None)
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


def _order_answer(order: Order, response_type: str) -> Any:
    if response_type == "ACK":
        answer = order_json(order, full=False)
        keep = ("symbol", "orderId", "orderListId", "clientOrderId", "transactTime")
        return {k: answer[k] for k in keep if k in answer}
    return order_json(order, full=response_type != "RESULT")
