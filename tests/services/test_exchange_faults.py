"""BinanceService against the simulator's injected faults: lost answers, 429 storms, 5xx on OCOs, rejections, keys."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest
from exchange_sim_builders import KEY, SECRET, HttpExchange, at, http_exchange, make_market

from app.devtools.faults import FaultKind, FaultPlan, FaultRule
from app.domain.clock import SimulatedClock
from app.domain.errors import (
    ConfigurationError,
    InsufficientFunds,
    OrderRejected,
    OrderStatusUnknown,
    RateLimited,
)
from app.domain.values import Balance, ListStatus, OrderStatus, Side
from app.venues.binance.protocol import Endpoint

BTC = "BTCUSDT"
ENTRY = "POST /api/v3/order"
OCO = "POST /api/v3/orderList/oco"


async def buy(http: HttpExchange, client_id: str = "entry-1", qty: str = "10") -> object:
    return await http.service.place_market_order(BTC, Side.BUY, D(qty), client_id)


async def protect(http: HttpExchange, list_id: str = "exit-1") -> object:
    return await http.service.place_oco_order(BTC, D("9.99"), D("110"), D("95"), D("94"), list_id)


@pytest.mark.parametrize("drop", [True, False], ids=["connection-dropped", "held-past-timeout"])
async def test_lost_answer_after_the_order_executed_is_resolved_by_client_id(tmp_path: Path, drop: bool) -> None:
    faults = FaultPlan([FaultRule(FaultKind.LOST_RESPONSE, ENTRY, drop=drop, delay_s=0.5)])
    async with http_exchange(make_market(tmp_path), SimulatedClock(at(120)), faults, timeout_s=0.2) as http:
        order = await buy(http)
        assert (order.client_order_id, order.status, order.executed_qty) == ("entry-1", OrderStatus.FILLED, D("10"))
        assert order.fills[0].commission == D("0.01")  # fills recovered from myTrades
        assert [o.client_order_id for o in http.orders()] == ["entry-1"]
        assert await http.service.get_account_balance("BTC") == Balance("BTC", D("9.99"))
        posts = [r for r in http.simulator.requests if r.method == "POST"]
        assert [(r.path, r.fault) for r in posts] == [(Endpoint.ORDER, "lost_response")]


async def test_429_storm_on_an_entry_waits_retry_after_and_places_one_order(tmp_path: Path) -> None:
    faults = FaultPlan([FaultRule(FaultKind.RATE_LIMIT, ENTRY, times=3, retry_after_s=7)])
    clock = SimulatedClock(at(120))
    async with http_exchange(make_market(tmp_path), clock, faults) as http:
        await http.service.get_symbol_rules(BTC)
        waited_s = 0.0
        for _ in range(10):  # the caller's loop: the adapter never resends a new order itself
            try:
                order = await buy(http)
                break
            except RateLimited as e:
                waited_s += e.retry_after_s
                await clock.sleep(e.retry_after_s)
        assert order.status is OrderStatus.FILLED
        assert waited_s == 21 and (clock.now() - at(120)).total_seconds() == 21
        assert http.statuses(Endpoint.ORDER) == [429, 429, 429, 200]
        assert 418 not in [r.status for r in http.simulator.requests]  # never sent inside a Retry-After window
        assert [o.client_order_id for o in http.orders()] == ["entry-1"]


async def test_429_on_a_read_is_waited_out_inside_the_adapter(tmp_path: Path) -> None:
    faults = FaultPlan([FaultRule(FaultKind.RATE_LIMIT, "GET /api/v3/account", times=1, retry_after_s=5)])
    clock = SimulatedClock(at(120))
    async with http_exchange(make_market(tmp_path), clock, faults) as http:
        assert await http.service.get_balances() == [Balance("USDT", D("10000"))]
        assert (clock.now() - at(120)).total_seconds() == 5
        assert http.statuses(Endpoint.ACCOUNT) == [429, 200]


async def test_ban_on_a_read_is_waited_out_but_an_entry_is_never_sent_while_banned(tmp_path: Path) -> None:
    faults = FaultPlan([FaultRule(FaultKind.BAN, "ticker/price", retry_after_s=30),
                        FaultRule(FaultKind.BAN, ENTRY, retry_after_s=60)])
    clock = SimulatedClock(at(120))
    async with http_exchange(make_market(tmp_path), clock, faults) as http:
        assert await http.service.get_symbol_price(BTC) == D("100")  # 418, waited 30 s, asked again
        assert http.statuses(Endpoint.TICKER_PRICE) == [418, 200]
        await http.service.get_symbol_rules(BTC)
        with pytest.raises(RateLimited) as banned:
            await buy(http)
        assert banned.value.retry_after_s == 60
        with pytest.raises(RateLimited):
            await buy(http)  # refused inside the adapter: the exchange never sees it
        assert http.statuses(Endpoint.ORDER) == [418] and http.orders() == []
        await clock.sleep(60)
        assert (await buy(http)).status is OrderStatus.FILLED
        assert [o.client_order_id for o in http.orders()] == ["entry-1"]


async def test_5xx_on_the_oco_after_it_executed_finds_the_one_list(tmp_path: Path) -> None:
    faults = FaultPlan([FaultRule(FaultKind.SERVER_ERROR, OCO, status=503, execute=True)])
    async with http_exchange(make_market(tmp_path), SimulatedClock(at(120)), faults) as http:
        await buy(http)
        oco = await protect(http)
        assert (oco.list_client_order_id, oco.list_status) == ("exit-1", ListStatus.EXECUTING)
        assert {leg.status for leg in oco.legs} == {OrderStatus.NEW}
        assert [x.list_client_order_id for x in http.order_lists()] == ["exit-1"]
        assert http.statuses(Endpoint.ORDER_LIST_OCO) == [503]


async def test_5xx_on_the_oco_before_it_executed_reports_unknown_and_a_retry_makes_one_list(tmp_path: Path) -> None:
    faults = FaultPlan([FaultRule(FaultKind.SERVER_ERROR, OCO, status=500)])
    async with http_exchange(make_market(tmp_path), SimulatedClock(at(120)), faults) as http:
        await buy(http)
        with pytest.raises(OrderStatusUnknown) as unknown:
            await protect(http)
        assert "exit-1" in str(unknown.value)
        assert http.order_lists() == []  # looked up by client id: not there, so it is safe to place again
        oco = await protect(http)
        assert oco.list_status is ListStatus.EXECUTING
        assert [x.list_client_order_id for x in http.order_lists()] == ["exit-1"]
        assert await http.service.get_account_balance("BTC") == Balance("BTC", D("0"), D("9.99"))


@pytest.mark.parametrize(("code", "msg"), [
    (-2010, "The relationship of the prices for the orders is not correct."),
    (-1013, "Filter failure: PERCENT_PRICE_BY_SIDE"),
])
async def test_oco_rejected_is_order_rejected_and_nothing_is_locked(tmp_path: Path, code: int, msg: str) -> None:
    faults = FaultPlan([FaultRule(FaultKind.REJECT, OCO, code=code, msg=msg)])
    async with http_exchange(make_market(tmp_path), SimulatedClock(at(120)), faults) as http:
        await buy(http)
        with pytest.raises(OrderRejected) as rejected:
            await protect(http)
        assert not isinstance(rejected.value, InsufficientFunds)
        assert rejected.value.code == code and msg in str(rejected.value)
        assert http.order_lists() == []
        assert await http.service.get_account_balance("BTC") == Balance("BTC", D("9.99"))


async def test_wrong_secret_is_a_configuration_error_without_the_secret(tmp_path: Path) -> None:
    wrong = "wrong-secret-ABCDEF-0123456789-zyxw"
    async with http_exchange(make_market(tmp_path), SimulatedClock(at(120)), secret=wrong) as http:
        with pytest.raises(ConfigurationError) as bad_key:
            await buy(http)
        text = str(bad_key.value)
        assert "BINANCE_SECRET_KEY" in text and "-1022" in text
        assert wrong not in text and SECRET not in text and KEY not in text
        assert "signature=" not in text or "signature=***" in text
        assert http.orders() == []
        assert http.statuses(Endpoint.ORDER) == [400]  # once: a bad signature is not retried


async def test_partial_fill_expires_the_rest_of_a_market_order(tmp_path: Path) -> None:
    faults = FaultPlan([FaultRule(FaultKind.PARTIAL_FILL, ENTRY, fill_ratio=D("0.25"))])
    async with http_exchange(make_market(tmp_path), SimulatedClock(at(120)), faults) as http:
        order = await buy(http)
        assert (order.status, order.orig_qty, order.executed_qty) == (OrderStatus.EXPIRED, D("10"), D("2.5"))
        assert order.fills[0].qty == D("2.5") and order.commission_in("BTC") == D("0.0025")
        assert await http.service.get_order(BTC, "entry-1") == order
        assert await http.service.get_account_balance("BTC") == Balance("BTC", D("2.4975"))
        assert await http.service.get_account_balance("USDT") == Balance("USDT", D("10000") - D("250.05"))
        second = await buy(http, "entry-2")  # the fault hit once only
        assert second.status is OrderStatus.FILLED


async def test_latency_and_faults_switched_on_mid_run(tmp_path: Path) -> None:
    faults = FaultPlan()
    async with http_exchange(make_market(tmp_path), SimulatedClock(at(120)), faults) as http:
        assert await http.service.get_symbol_price(BTC) == D("100")
        faults.add(FaultRule(FaultKind.LATENCY, "ticker/price", times=None, delay_s=0.01))
        faults.add(FaultRule(FaultKind.REJECT, ENTRY, code=-2010, msg="Market is closed.", skip=1))
        assert await http.service.get_symbol_price(BTC) == D("100")
        await buy(http, "entry-1")
        with pytest.raises(OrderRejected, match="Market is closed"):
            await buy(http, "entry-2")
        faults.clear()
        await buy(http, "entry-2")
        assert [o.client_order_id for o in http.orders()] == ["entry-1", "entry-2"]
        assert [r.fault for r in http.simulator.requests if r.path == Endpoint.TICKER_PRICE] == [None, "latency"]
