"""The simulator's order list endpoints: the bot's protective OCO placed, queried, canceled and listed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from app.devtools.api_errors import BinanceApiError, exchange_call
from app.devtools.market_lookup import MarketLookup
from app.devtools.request_params import RequestContext, decimal_param, int_param, required, side_param
from app.domain.values import OcoOrder, OrderType, Side, oco_leg_client_ids
from app.venues.binance.protocol import canceled_order_list_json, order_list_json


class OrderListEndpoints:
    """What a signed request does to its account's OCOs; list client ids not sent are generated."""

    def __init__(self, lookup: MarketLookup, next_id: Callable[[], str]) -> None:
        self._lookup = lookup
        self._next_id = next_id

    async def new_oco(self, context: RequestContext) -> Any:
        params = context.params
        symbol = self._lookup.symbol(params)
        list_client_order_id = params.get("listClientOrderId") or self._next_id()
        _check_oco_shape(params, list_client_order_id)
        oco = await exchange_call(context.account.place_oco_order(
            symbol, decimal_param(params, "quantity"), decimal_param(params, "abovePrice"),
            decimal_param(params, "belowStopPrice"), decimal_param(params, "belowPrice"), list_client_order_id))
        return order_list_json(oco, reports=True, full=params.get("newOrderRespType") == "FULL")

    async def query_order_list(self, context: RequestContext) -> Any:
        return order_list_json(await self._find_order_list(context, None, -2013), reports=False)

    async def cancel_order_list(self, context: RequestContext) -> Any:
        symbol = self._lookup.symbol(context.params)
        found = await self._find_order_list(context, symbol, -2011)
        oco = await exchange_call(context.account.cancel_oco_order(symbol, found.list_client_order_id), -2011)
        return canceled_order_list_json(oco, context.params.get("newClientOrderId") or self._next_id())

    async def open_order_lists(self, context: RequestContext) -> Any:
        return [order_list_json(x, reports=False) for x in await context.account.get_open_oco_orders()]

    async def _find_order_list(self, context: RequestContext, symbol: str | None, not_found_code: int) -> OcoOrder:
        params = context.params
        list_id = int_param(params, "orderListId", None)
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


def _check_oco_shape(params: Mapping[str, str], list_client_order_id: str) -> None:
    """The simulator's OCO is the bot's protective bracket: SELL, LIMIT_MAKER above, STOP_LOSS_LIMIT below."""
    if side_param(params) is not Side.SELL:
        raise BinanceApiError(-1013, "The simulator supports SELL OCOs only.")
    if required(params, "aboveType") != OrderType.LIMIT_MAKER:
        raise BinanceApiError(-1158, "The simulator supports aboveType=LIMIT_MAKER only.")
    if required(params, "belowType") != OrderType.STOP_LOSS_LIMIT:
        raise BinanceApiError(-1158, "The simulator supports belowType=STOP_LOSS_LIMIT only.")
    required(params, "belowTimeInForce")
    take_profit_id, stop_id = oco_leg_client_ids(list_client_order_id)
    for name, expected in (("aboveClientOrderId", take_profit_id), ("belowClientOrderId", stop_id)):
        if params.get(name, expected) != expected:
            raise BinanceApiError(-1102, f"The simulator names OCO legs '<listClientOrderId>-tp' and '-sl': "
                                         f"'{name}' must be '{expected}'.")
