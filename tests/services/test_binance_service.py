"""BinanceService over httpx.MockTransport: signing, parsing, OCO, errors, time, rate limits, unknown outcomes."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.clock import SimulatedClock, ms_from_utc
from app.domain.errors import (
    ConfigurationError,
    ExchangeError,
    InsufficientFunds,
    OrderNotFound,
    OrderRejected,
    OrderStatusUnknown,
    RateLimited,
    TemporaryExchangeError,
)
from app.domain.values import (
    Candle,
    Fill,
    ListStatus,
    OcoOrder,
    Order,
    OrderStatus,
    OrderType,
    Side,
    SymbolRules,
    Timeframe,
    format_decimal,
)
from app.venues.binance.client import BinanceService, default_base_url
from app.venues.binance.errors import Failure, RequestContext, to_exchange_error
from app.venues.binance.protocol import (
    API_KEY_HEADER,
    ERROR_CODES,
    SIGNED_ENDPOINTS,
    USED_WEIGHT_HEADER,
    Endpoint,
    canceled_order_list_json,
    error_json,
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
from app.venues.binance.server_time import ServerTimeSync

KEY = "test-api-key-0123"
SECRET = "s3cr3t-NOT-a-real-binance-secret-0123456789abcdef"
T0 = datetime(2025, 3, 3, 12, 0, 30, tzinfo=UTC)
RULES = SymbolRules("BTCUSDT", "BTC", "USDT", Decimal("0.01"), Decimal("0.00001"), Decimal("0.00001"),
                    Decimal("9000"), Decimal("5"), Decimal("0.01"), Decimal("1000000"))
Reply = Any  # JSON body, (status, body, headers), an exception to raise, or a callable(request) -> one of those


@dataclass
class FakeBinance:
    """A scripted Binance: checks the key, the HMAC over the raw query and body, and the timestamp like the server."""

    clock: SimulatedClock
    server_ahead_ms: int = 0
    weight_header: int | None = None
    routes: dict[tuple[str, str], list[Reply]] = field(default_factory=dict)
    requests: list[tuple[datetime, httpx.Request]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.on("GET", Endpoint.EXCHANGE_INFO, exchange_info_json([RULES], 0))
        self.on("GET", Endpoint.TIME, lambda _: server_time_json(self.server_ms()))

    def on(self, method: str, path: str, *replies: Reply) -> None:
        """Replies are used in turn; the last one repeats."""
        self.routes[(method, path)] = list(replies)

    def server_ms(self) -> int:
        return ms_from_utc(self.clock.now()) + self.server_ahead_ms

    def sent(self, method: str, path: str) -> list[dict[str, str]]:
        return [parse_params(r.url.query.decode(), r.content.decode()) for _, r in self.requests
                if r.method == method and r.url.path == path]

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((self.clock.now(), request))
        refused = self._auth_problem(request) if request.url.path in SIGNED_ENDPOINTS else None
        reply = refused or self._next_reply(request)
        if callable(reply):
            reply = reply(request)
        if isinstance(reply, Exception):
            raise reply
        status, body, headers = reply if isinstance(reply, tuple) else (200, reply, {})
        if self.weight_header is not None:
            headers = {**headers, USED_WEIGHT_HEADER: str(self.weight_header)}
        return httpx.Response(status, json=body, headers=headers)

    def _next_reply(self, request: httpx.Request) -> Reply:
        replies = self.routes[(request.method, request.url.path)]
        return replies.pop(0) if len(replies) > 1 else replies[0]

    def _auth_problem(self, request: httpx.Request) -> Reply | None:
        query, body = request.url.query.decode(), request.content.decode()
        if request.headers.get(API_KEY_HEADER) != KEY:
            return error_json(-2015) + ({},)
        signature_last = query.rpartition("&")[2].startswith("signature=")
        if not signature_last or not verify_signature(query, body, SECRET):
            return error_json(-1022) + ({},)
        params = parse_params(query, body)
        problem = timestamp_error(int(params["timestamp"]), self.server_ms(), int(params["recvWindow"]))
        return error_json(-1021, problem) + ({},) if problem else None


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(T0)


@pytest.fixture
def fake(clock: SimulatedClock) -> FakeBinance:
    return FakeBinance(clock)


def synced_now(clock: SimulatedClock, offset_ms: int = 0) -> ServerTimeSync:
    """The start-up measurement, as the container makes it: most tests are about their own request, not a resync."""
    sync = ServerTimeSync(clock)
    sync.attempting()
    now_ms = ms_from_utc(clock.now())
    sync.record(now_ms + offset_ms, now_ms, now_ms)
    return sync


def make_service(fake: FakeBinance, clock: SimulatedClock, **kwargs: Any) -> BinanceService:
    http = httpx.AsyncClient(transport=httpx.MockTransport(fake.handler))
    kwargs.setdefault("time_sync", synced_now(clock))
    return BinanceService(KEY, SECRET, default_base_url(testnet=True), clock, http=http, **kwargs)


@pytest.fixture
def service(fake: FakeBinance, clock: SimulatedClock) -> BinanceService:
    return make_service(fake, clock)


def market_buy(status: OrderStatus = OrderStatus.FILLED, client_id: str = "entry-1") -> Order:
    fills = (Fill(Decimal("100000.00"), Decimal("0.00600"), Decimal("0.00000600"), "BTC", 1),
             Fill(Decimal("100010.00"), Decimal("0.00400"), Decimal("0.00000400"), "BTC", 2))
    return Order("BTCUSDT", 42, client_id, Side.BUY, OrderType.MARKET, status, Decimal("0.01"), Decimal("0.01"),
                 Decimal("1000.04"), fills=fills, transact_time=T0)


def oco_legs(tp_status: OrderStatus, sl_status: OrderStatus) -> tuple[Order, Order]:
    common = {"symbol": "BTCUSDT", "side": Side.SELL, "orig_qty": Decimal("0.00999"), "transact_time": T0,
              "order_list_id": 5}
    filled = {"executed_qty": Decimal("0.00999"), "cumulative_quote_qty": Decimal("1049.4495"),
              "fills": (Fill(Decimal("105050.00"), Decimal("0.00999"), Decimal("1.0494495"), "USDT", 77),)}
    tp = Order(order_id=51, client_order_id="exit-1-tp", type=OrderType.LIMIT_MAKER, status=tp_status,
               price=Decimal("105050.00"), **common, **(filled if tp_status is OrderStatus.FILLED else {}))
    sl = Order(order_id=50, client_order_id="exit-1-sl", type=OrderType.STOP_LOSS_LIMIT, status=sl_status,
               price=Decimal("97900.00"), stop_price=Decimal("98000.00"), **common)
    return tp, sl


# ---------------------------------------------------------------- signing and formatting


@pytest.mark.asyncio
async def test_signed_request_carries_key_timestamp_window_and_signature_last(service: BinanceService,
                                                                              fake: FakeBinance) -> None:
    fake.on("GET", Endpoint.ACCOUNT, {"balances": [{"asset": "USDT", "free": "1000.5", "locked": "0"}]})
    balance = await service.get_account_balance("USDT")
    assert balance.free == Decimal("1000.5")
    _, request = fake.requests[-1]
    query = request.url.query.decode()
    names = [pair.split("=")[0] for pair in query.split("&")]
    assert names == ["omitZeroBalances", "recvWindow", "timestamp", "signature"]
    assert parse_params(query)["timestamp"] == str(ms_from_utc(T0))
    assert request.headers[API_KEY_HEADER] == KEY


steps = st.sampled_from([Decimal(s) for s in ("1", "0.1", "0.01", "0.001", "0.00001", "0.00000001", "1E-8",
                                              "0.00100000", "10", "1E+1")])


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=10**12), steps)
def test_decimal_on_a_step_grid_formats_plainly_and_round_trips(n: int, step: Decimal) -> None:
    value = n * step
    text = format_decimal(value, step)
    assert "E" not in text.upper()
    assert Decimal(text) == value


@pytest.mark.asyncio
async def test_market_order_sends_plain_quantity_even_for_exponent_decimals(service: BinanceService,
                                                                            fake: FakeBinance) -> None:
    fake.on("POST", Endpoint.ORDER, order_json(market_buy()))
    await service.place_market_order("BTCUSDT", Side.BUY, Decimal("1E-5"), "entry-1")
    assert fake.sent("POST", Endpoint.ORDER)[0]["quantity"] == "0.00001"


@pytest.mark.asyncio
async def test_off_grid_quantity_is_refused_before_sending(service: BinanceService, fake: FakeBinance) -> None:
    with pytest.raises(OrderRejected, match="stepSize|multiple of 0.00001"):
        await service.place_market_order("BTCUSDT", Side.BUY, Decimal("0.000015"), "entry-1")
    assert fake.sent("POST", Endpoint.ORDER) == []


# ---------------------------------------------------------------- orders


@pytest.mark.asyncio
async def test_full_market_order_is_parsed_with_average_price_and_base_commission(service: BinanceService,
                                                                                  fake: FakeBinance) -> None:
    fake.on("POST", Endpoint.ORDER, order_json(market_buy()))
    order = await service.place_market_order("BTCUSDT", Side.BUY, Decimal("0.01"), "entry-1")
    assert order.status is OrderStatus.FILLED and order.client_order_id == "entry-1"
    assert order.avg_price == Decimal("100004")
    assert order.commission_in("BTC") == Decimal("0.00001")
    assert order.executed_qty - order.commission_in("BTC") == Decimal("0.00999")
    sent = fake.sent("POST", Endpoint.ORDER)[0]
    assert {k: sent[k] for k in ("symbol", "side", "type", "quantity", "newClientOrderId", "newOrderRespType")} == {
        "symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01000",
        "newClientOrderId": "entry-1", "newOrderRespType": "FULL"}


@pytest.mark.asyncio
async def test_oco_request_parameters_are_exactly_the_protective_sell_bracket(service: BinanceService,
                                                                              fake: FakeBinance) -> None:
    tp, sl = oco_legs(OrderStatus.NEW, OrderStatus.NEW)
    fake.on("POST", Endpoint.ORDER_LIST_OCO,
            order_list_json(OcoOrder("BTCUSDT", 5, "exit-1", ListStatus.EXECUTING, (sl, tp), T0), full=True))
    oco = await service.place_oco_order("BTCUSDT", Decimal("0.00999"), Decimal("105050"), Decimal("98000"),
                                        Decimal("97900"), "exit-1")
    _, request = fake.requests[-1]
    pairs = [tuple(p.split("=", 1)) for p in request.url.query.decode().split("&")]
    assert pairs[:-3] == [
        ("symbol", "BTCUSDT"), ("side", "SELL"), ("quantity", "0.00999"), ("listClientOrderId", "exit-1"),
        ("aboveType", "LIMIT_MAKER"), ("abovePrice", "105050.00"), ("aboveClientOrderId", "exit-1-tp"),
        ("belowType", "STOP_LOSS_LIMIT"), ("belowStopPrice", "98000.00"), ("belowPrice", "97900.00"),
        ("belowTimeInForce", "GTC"), ("belowClientOrderId", "exit-1-sl"), ("newOrderRespType", "FULL"),
    ]
    assert [name for name, _ in pairs[-3:]] == ["recvWindow", "timestamp", "signature"]
    assert oco.is_open and oco.take_profit_leg.client_order_id == "exit-1-tp"
    assert oco.stop_loss_leg.stop_price == Decimal("98000")


@pytest.mark.asyncio
async def test_oco_status_queries_each_leg_and_trades_only_for_the_filled_one(service: BinanceService,
                                                                              fake: FakeBinance) -> None:
    tp, sl = oco_legs(OrderStatus.FILLED, OrderStatus.EXPIRED)
    listed = OcoOrder("BTCUSDT", 5, "exit-1", ListStatus.ALL_DONE, (sl, tp), T0)
    fake.on("GET", Endpoint.ORDER_LIST, order_list_json(listed, reports=False))
    fake.on("GET", Endpoint.ORDER, lambda r: queried_order_json(tp if "orderId=51" in str(r.url) else sl))
    fake.on("GET", Endpoint.MY_TRADES, my_trades_json(tp, is_maker=True))
    oco = await service.get_oco_order_status("BTCUSDT", "exit-1")
    assert oco == listed
    assert oco.filled_leg == tp and oco.filled_leg.avg_price == Decimal("105050")
    assert oco.filled_leg.commission_in("USDT") == Decimal("1.0494495")
    assert fake.sent("GET", Endpoint.ORDER_LIST)[0]["origClientOrderId"] == "exit-1"
    assert [p["orderId"] for p in fake.sent("GET", Endpoint.ORDER)] == ["50", "51"]
    assert [p["orderId"] for p in fake.sent("GET", Endpoint.MY_TRADES)] == ["51"]


@pytest.mark.asyncio
async def test_cancel_oco_and_open_lists(service: BinanceService, fake: FakeBinance) -> None:
    tp, sl = oco_legs(OrderStatus.NEW, OrderStatus.NEW)
    open_list = OcoOrder("BTCUSDT", 5, "exit-1", ListStatus.EXECUTING, (sl, tp), T0)
    fake.on("GET", Endpoint.OPEN_ORDER_LIST, [order_list_json(open_list, reports=False)])
    fake.on("GET", Endpoint.ORDER, lambda r: queried_order_json(tp if "orderId=51" in str(r.url) else sl))
    assert await service.get_open_oco_orders() == [open_list]
    canceled = replace(open_list, list_status=ListStatus.ALL_DONE,
                       legs=tuple(replace(leg, status=OrderStatus.CANCELED) for leg in open_list.legs))
    fake.on("DELETE", Endpoint.ORDER_LIST, canceled_order_list_json(canceled, "c-1"))
    result = await service.cancel_oco_order("BTCUSDT", "exit-1")
    assert result == canceled
    assert fake.sent("DELETE", Endpoint.ORDER_LIST)[0]["listClientOrderId"] == "exit-1"


# ---------------------------------------------------------------- market data


@pytest.mark.asyncio
async def test_klines_return_only_closed_candles(service: BinanceService, fake: FakeBinance) -> None:
    start = ms_from_utc(T0) - 3 * 300_000 - 30_000  # three closed 5m candles, then one still open
    candles = [Candle(start + i * 300_000, Decimal("1"), Decimal("2"), Decimal("0.5"), Decimal("1.5"), Decimal("3"))
               for i in range(4)]
    fake.on("GET", Endpoint.KLINES, [kline_json(c, 300_000) for c in candles])
    got = await service.get_klines("BTCUSDT", Timeframe.M5, 2)
    assert got == candles[1:3]
    assert fake.sent("GET", Endpoint.KLINES)[0] == {"symbol": "BTCUSDT", "interval": "5m", "limit": "3"}


@pytest.mark.asyncio
async def test_symbol_rules_are_cached_until_the_ttl(fake: FakeBinance, clock: SimulatedClock) -> None:
    service = make_service(fake, clock, rules_ttl_s=600)
    assert await service.get_symbol_rules("BTCUSDT") == RULES
    clock.advance(timedelta(seconds=599))
    await service.get_symbol_rules("BTCUSDT")
    assert len(fake.sent("GET", Endpoint.EXCHANGE_INFO)) == 1
    clock.advance(timedelta(seconds=1))
    await service.get_symbol_rules("BTCUSDT")
    assert len(fake.sent("GET", Endpoint.EXCHANGE_INFO)) == 2


@pytest.mark.asyncio
async def test_price_is_parsed_from_its_string(service: BinanceService, fake: FakeBinance) -> None:
    fake.on("GET", Endpoint.TICKER_PRICE, ticker_price_json("BTCUSDT", Decimal("100123.45000001")))
    assert await service.get_symbol_price("BTCUSDT") == Decimal("100123.45000001")


# ---------------------------------------------------------------- errors


READ = RequestContext("read price", "BTCUSDT")
NEW = RequestContext("place MARKET order", "BTCUSDT", "BUY", Decimal("0.01"), client_order_id="e-1", new_order=True)
EXPECTED_BY_CODE: dict[int, type[Exception]] = {
    -1000: TemporaryExchangeError, -1003: RateLimited, -1006: TemporaryExchangeError, -1007: TemporaryExchangeError,
    -1013: OrderRejected, -1015: RateLimited, -1021: TemporaryExchangeError, -1022: ConfigurationError,
    -1100: OrderRejected, -1102: OrderRejected, -1111: OrderRejected, -1120: ConfigurationError,
    -1121: ConfigurationError, -1145: OrderRejected, -1158: OrderRejected, -1160: OrderRejected,
    -1165: OrderRejected, -1166: OrderRejected, -1168: OrderRejected, -1196: OrderRejected, -1197: OrderRejected,
    -1198: OrderRejected, -1199: OrderRejected, -2010: InsufficientFunds, -2011: OrderNotFound,
    -2013: OrderNotFound, -2014: ConfigurationError, -2015: ConfigurationError, -2026: OrderNotFound,
}


def test_every_code_in_the_error_table_has_an_expected_mapping() -> None:
    assert set(EXPECTED_BY_CODE) == set(ERROR_CODES)


@pytest.mark.parametrize("code", sorted(EXPECTED_BY_CODE))
def test_error_code_maps_to_its_class(code: int) -> None:
    status, body = error_json(code)
    error = to_exchange_error(Failure(status, code, body["msg"], 3.0), READ)
    assert type(error) is EXPECTED_BY_CODE[code]


@pytest.mark.parametrize(
    ("failure", "context", "expected"),
    [
        (Failure(500, None, "Internal Server Error"), NEW, OrderStatusUnknown),
        (Failure(503, -1007, "Timeout waiting"), NEW, OrderStatusUnknown),
        (Failure(500, -1006, "unexpected"), NEW, OrderStatusUnknown),
        (Failure(400, -1000, "unknown"), NEW, OrderStatusUnknown),
        (Failure(None, None, "ReadTimeout"), NEW, OrderStatusUnknown),
        (Failure(None, None, "ConnectError", sent=False), NEW, TemporaryExchangeError),
        (Failure(None, None, "ReadTimeout"), READ, TemporaryExchangeError),
        (Failure(502, None, "Bad Gateway"), READ, TemporaryExchangeError),
        (Failure(429, -1003, "Too much weight", 12.0), NEW, RateLimited),
        (Failure(418, -1003, "IP banned", 120.0), READ, RateLimited),
        (Failure(400, -2010, "The relationship of the prices for the orders is not correct."), NEW, OrderRejected),
        (Failure(400, -2010, "Account has insufficient balance for requested action."), NEW, InsufficientFunds),
        (Failure(400, -9999, "something new"), READ, ExchangeError),
        (Failure(401, None, "Unauthorized"), READ, ConfigurationError),
    ],
)
def test_status_and_transport_failures_map_by_request_kind(failure: Failure, context: RequestContext,
                                                           expected: type[Exception]) -> None:
    assert type(to_exchange_error(failure, context)) is expected


def test_error_messages_carry_symbol_side_quantity_price_and_retry_after() -> None:
    context = RequestContext("place OCO", "BTCUSDT", "SELL", Decimal("0.00999"), "tp=105050 stop=98000 limit=97900",
                             "exit-1", new_order=True)
    error = to_exchange_error(Failure(400, -1013, "Filter failure: PRICE_FILTER"), context)
    for part in ("BTCUSDT", "SELL", "0.00999", "tp=105050", "exit-1", "-1013", "PRICE_FILTER"):
        assert part in str(error)
    limited = to_exchange_error(Failure(429, -1003, "slow down", 17.0), context)
    assert isinstance(limited, RateLimited) and limited.retry_after_s == 17.0


@pytest.mark.asyncio
async def test_wrong_secret_is_a_clear_configuration_error(fake: FakeBinance, clock: SimulatedClock) -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(fake.handler))
    service = BinanceService(KEY, "wrong-secret", default_base_url(True), clock, http=http)
    with pytest.raises(ConfigurationError, match="check BINANCE_API_KEY and BINANCE_SECRET_KEY") as caught:
        await service.get_balances()
    assert "-1022" in str(caught.value)


@pytest.mark.asyncio
async def test_insufficient_balance_on_a_market_order(service: BinanceService, fake: FakeBinance) -> None:
    fake.on("POST", Endpoint.ORDER, error_json(-2010) + ({},))
    with pytest.raises(InsufficientFunds, match="SELL BTCUSDT qty=0.5"):
        await service.place_market_order("BTCUSDT", Side.SELL, Decimal("0.5"), "exit-9")
    assert fake.sent("GET", Endpoint.ORDER) == []  # a rejection is certain: nothing to look up


# ---------------------------------------------------------------- time and rate limits


@pytest.mark.asyncio
async def test_invalid_timestamp_resyncs_the_offset_and_retries_once(fake: FakeBinance,
                                                                    clock: SimulatedClock) -> None:
    fake.server_ahead_ms = 10_000
    service = make_service(fake, clock)
    fake.on("GET", Endpoint.ACCOUNT, {"balances": []})
    assert await service.get_balances() == []
    assert service.time_offset_ms == 10_000
    paths = [r.url.path for _, r in fake.requests]
    assert paths == [Endpoint.ACCOUNT, Endpoint.TIME, Endpoint.ACCOUNT]
    assert fake.sent("GET", Endpoint.ACCOUNT)[1]["timestamp"] == str(ms_from_utc(T0) + 10_000)


@pytest.mark.asyncio
async def test_invalid_timestamp_after_the_resync_is_not_retried_again(fake: FakeBinance,
                                                                      clock: SimulatedClock) -> None:
    fake.server_ahead_ms = 10_000
    fake.on("GET", Endpoint.TIME, lambda _: server_time_json(ms_from_utc(clock.now())))  # a lying time endpoint
    service = make_service(fake, clock)
    fake.on("GET", Endpoint.ACCOUNT, {"balances": []})
    with pytest.raises(TemporaryExchangeError, match="-1021"):
        await service.get_balances()
    assert len(fake.sent("GET", Endpoint.ACCOUNT)) == 2


def klines_to(server_ms: int) -> list[list[Any]]:
    """Binance's answer at `server_ms`: four closed 5m candles and the one still open."""
    open_ms = server_ms // 300_000 * 300_000
    return [kline_json(Candle(open_ms - i * 300_000, Decimal("1"), Decimal("2"), Decimal("0.5"), Decimal(i + 1),
                              Decimal("3")), 300_000) for i in reversed(range(5))]


def newest_open_ms(candles: list[Candle]) -> int:
    return candles[-1].open_time_ms


@pytest.mark.asyncio
async def test_market_data_resyncs_the_offset_each_interval_of_its_clock(fake: FakeBinance,
                                                                         clock: SimulatedClock) -> None:
    """The venue's clock ran 10 minutes ahead since start-up (a venue at another speed): within the interval the
    offset is kept; once it is due the klines request measures it first and keeps the candles closed since."""
    service = make_service(fake, clock)  # measured at T0: offset 0
    fake.server_ahead_ms = 600_000
    fake.on("GET", Endpoint.KLINES, lambda _: klines_to(fake.server_ms()))
    clock.advance(timedelta(seconds=59))
    await service.get_klines("BTCUSDT", Timeframe.M5, 4)
    assert fake.sent("GET", Endpoint.TIME) == []
    clock.advance(timedelta(seconds=1))
    candles = await service.get_klines("BTCUSDT", Timeframe.M5, 4)
    assert [r.url.path for _, r in fake.requests][-2:] == [Endpoint.TIME, Endpoint.KLINES]
    assert service.time_offset_ms == 600_000
    assert newest_open_ms(candles) == fake.server_ms() // 300_000 * 300_000 - 300_000
    assert len(candles) == 4


@pytest.mark.asyncio
async def test_the_resync_interval_is_a_setting_of_the_sync(fake: FakeBinance, clock: SimulatedClock) -> None:
    service = make_service(fake, clock, time_sync=ServerTimeSync(clock, interval_s=300))
    fake.on("GET", Endpoint.TICKER_PRICE, ticker_price_json("BTCUSDT", Decimal("1")))
    for _ in range(6):
        await service.get_symbol_price("BTCUSDT")
        clock.advance(timedelta(seconds=60))
    assert [t for t, r in fake.requests if r.url.path == Endpoint.TIME] == [T0, T0 + timedelta(minutes=5)]


@pytest.mark.asyncio
async def test_invalid_timestamp_on_a_users_request_corrects_market_data_too(fake: FakeBinance,
                                                                             clock: SimulatedClock) -> None:
    """Market data and the users' clients share the venue's sync: a -1021 resync is everyone's."""
    shared = synced_now(clock)
    market, user = make_service(fake, clock, time_sync=shared), make_service(fake, clock, time_sync=shared)
    fake.server_ahead_ms = 20_000
    fake.on("GET", Endpoint.ACCOUNT, {"balances": []})
    fake.on("GET", Endpoint.KLINES, lambda _: klines_to(fake.server_ms()))
    clock.advance(timedelta(seconds=1))
    await user.get_balances()
    candles = await market.get_klines("BTCUSDT", Timeframe.M5, 4)
    assert market.time_offset_ms == 20_000
    assert [r.url.path for _, r in fake.requests] == [Endpoint.ACCOUNT, Endpoint.TIME, Endpoint.ACCOUNT,
                                                      Endpoint.KLINES]
    assert newest_open_ms(candles) == fake.server_ms() // 300_000 * 300_000 - 300_000


@pytest.mark.asyncio
async def test_a_failed_resync_keeps_the_offset_and_the_request_goes_on(fake: FakeBinance,
                                                                        clock: SimulatedClock) -> None:
    service = make_service(fake, clock, time_sync=synced_now(clock, offset_ms=1500))
    fake.on("GET", Endpoint.TIME, error_json(-1007) + ({},))
    fake.on("GET", Endpoint.TICKER_PRICE, ticker_price_json("BTCUSDT", Decimal("1")))
    clock.advance(timedelta(seconds=60))
    assert await service.get_symbol_price("BTCUSDT") == Decimal("1")
    assert await service.get_symbol_price("BTCUSDT") == Decimal("1")  # asked again an interval later, not now
    assert service.time_offset_ms == 1500
    assert len(fake.sent("GET", Endpoint.TIME)) == 1


@pytest.mark.asyncio
async def test_a_new_client_measures_the_offset_before_its_first_request(fake: FakeBinance,
                                                                         clock: SimulatedClock) -> None:
    fake.server_ahead_ms = -4000
    service = make_service(fake, clock, time_sync=ServerTimeSync(clock))
    fake.on("GET", Endpoint.ACCOUNT, {"balances": []})
    await service.get_balances()
    assert [r.url.path for _, r in fake.requests] == [Endpoint.TIME, Endpoint.ACCOUNT]
    assert fake.sent("GET", Endpoint.ACCOUNT)[0]["timestamp"] == str(ms_from_utc(T0) - 4000)


@pytest.mark.asyncio
async def test_429_on_a_read_sleeps_retry_after_then_succeeds(service: BinanceService, fake: FakeBinance,
                                                             clock: SimulatedClock) -> None:
    fake.on("GET", Endpoint.TICKER_PRICE, error_json(-1003) + ({"Retry-After": "7"},),
            ticker_price_json("BTCUSDT", Decimal("100000")))
    assert await service.get_symbol_price("BTCUSDT") == Decimal("100000")
    assert clock.now() == T0 + timedelta(seconds=7)
    assert [t for t, _ in fake.requests] == [T0, T0 + timedelta(seconds=7)]


@pytest.mark.asyncio
async def test_second_429_on_a_read_raises_rate_limited(service: BinanceService, fake: FakeBinance) -> None:
    fake.on("GET", Endpoint.TICKER_PRICE, error_json(-1003) + ({"Retry-After": "5"},))
    with pytest.raises(RateLimited) as caught:
        await service.get_symbol_price("BTCUSDT")
    assert caught.value.retry_after_s == 5.0
    assert len(fake.sent("GET", Endpoint.TICKER_PRICE)) == 2


@pytest.mark.asyncio
async def test_429_on_a_new_order_raises_and_blocks_further_orders(service: BinanceService, fake: FakeBinance,
                                                                   clock: SimulatedClock) -> None:
    await service.get_symbol_rules("BTCUSDT")
    fake.on("POST", Endpoint.ORDER, (429, {"code": -1015, "msg": "Too many new orders."}, {"Retry-After": "30"}))
    with pytest.raises(RateLimited) as caught:
        await service.place_market_order("BTCUSDT", Side.BUY, Decimal("0.01"), "entry-1")
    assert caught.value.retry_after_s == 30.0 and clock.now() == T0
    with pytest.raises(RateLimited, match="not sent"):
        await service.place_market_order("BTCUSDT", Side.BUY, Decimal("0.01"), "entry-2")
    assert len(fake.sent("POST", Endpoint.ORDER)) == 1 and fake.sent("GET", Endpoint.ORDER) == []


@pytest.mark.asyncio
async def test_used_weight_near_the_limit_waits_for_the_next_minute(fake: FakeBinance,
                                                                    clock: SimulatedClock) -> None:
    service = make_service(fake, clock, weight_limit=1000)
    fake.weight_header = 799
    fake.on("GET", Endpoint.TICKER_PRICE, ticker_price_json("BTCUSDT", Decimal("1")))
    await service.get_symbol_price("BTCUSDT")  # 799 + 2 > 80 % of 1000 for the next one
    assert service.used_weight == 799
    await service.get_symbol_price("BTCUSDT")
    next_minute = T0.replace(second=0) + timedelta(minutes=1)
    assert [t for t, _ in fake.requests] == [T0, next_minute]


@pytest.mark.asyncio
async def test_used_weight_below_the_threshold_does_not_wait(fake: FakeBinance, clock: SimulatedClock) -> None:
    service = make_service(fake, clock, weight_limit=1000)
    fake.weight_header = 700
    fake.on("GET", Endpoint.TICKER_PRICE, ticker_price_json("BTCUSDT", Decimal("1")))
    await service.get_symbol_price("BTCUSDT")
    await service.get_symbol_price("BTCUSDT")
    assert clock.now() == T0


# ---------------------------------------------------------------- unknown outcomes


def timeout(request: httpx.Request) -> Exception:
    return httpx.ReadTimeout("timed out", request=request)


@pytest.mark.asyncio
async def test_timeout_on_market_order_finds_it_by_client_id_without_resending(service: BinanceService,
                                                                               fake: FakeBinance) -> None:
    placed = market_buy()
    fake.on("POST", Endpoint.ORDER, timeout)
    fake.on("GET", Endpoint.ORDER, queried_order_json(placed))
    fake.on("GET", Endpoint.MY_TRADES, my_trades_json(placed))
    order = await service.place_market_order("BTCUSDT", Side.BUY, Decimal("0.01"), "entry-1")
    assert order == placed
    assert len(fake.sent("POST", Endpoint.ORDER)) == 1
    assert fake.sent("GET", Endpoint.ORDER)[0]["origClientOrderId"] == "entry-1"


@pytest.mark.asyncio
async def test_5xx_on_market_order_and_no_such_order_is_status_unknown(service: BinanceService,
                                                                       fake: FakeBinance) -> None:
    fake.on("POST", Endpoint.ORDER, (502, {"code": -1000, "msg": "An unknown error occurred"}, {}))
    fake.on("GET", Endpoint.ORDER, error_json(-2013) + ({},))
    with pytest.raises(OrderStatusUnknown, match="entry-1"):
        await service.place_market_order("BTCUSDT", Side.BUY, Decimal("0.01"), "entry-1")
    assert len(fake.sent("POST", Endpoint.ORDER)) == 1 and len(fake.sent("GET", Endpoint.ORDER)) == 1


@pytest.mark.asyncio
async def test_timeout_and_failed_lookup_is_status_unknown(service: BinanceService, fake: FakeBinance) -> None:
    fake.on("POST", Endpoint.ORDER, timeout)
    fake.on("GET", Endpoint.ORDER, timeout)
    with pytest.raises(OrderStatusUnknown, match="lookup by client id failed"):
        await service.place_market_order("BTCUSDT", Side.BUY, Decimal("0.01"), "entry-1")
    assert len(fake.sent("POST", Endpoint.ORDER)) == 1


@pytest.mark.asyncio
async def test_connect_error_on_a_new_order_was_not_sent(service: BinanceService, fake: FakeBinance) -> None:
    fake.on("POST", Endpoint.ORDER, lambda r: httpx.ConnectError("refused", request=r))
    with pytest.raises(TemporaryExchangeError) as caught:
        await service.place_market_order("BTCUSDT", Side.BUY, Decimal("0.01"), "entry-1")
    assert not isinstance(caught.value, OrderStatusUnknown)
    assert fake.sent("GET", Endpoint.ORDER) == []


@pytest.mark.asyncio
async def test_5xx_on_oco_finds_the_list_by_its_client_id(service: BinanceService, fake: FakeBinance) -> None:
    tp, sl = oco_legs(OrderStatus.NEW, OrderStatus.NEW)
    placed = OcoOrder("BTCUSDT", 5, "exit-1", ListStatus.EXECUTING, (sl, tp), T0)
    fake.on("POST", Endpoint.ORDER_LIST_OCO, (503, {"code": -1007, "msg": "Timeout waiting for response"}, {}))
    fake.on("GET", Endpoint.ORDER_LIST, order_list_json(placed, reports=False))
    fake.on("GET", Endpoint.ORDER, lambda r: queried_order_json(tp if "orderId=51" in str(r.url) else sl))
    oco = await service.place_oco_order("BTCUSDT", Decimal("0.00999"), Decimal("105050"), Decimal("98000"),
                                        Decimal("97900"), "exit-1")
    assert oco == placed
    assert len(fake.sent("POST", Endpoint.ORDER_LIST_OCO)) == 1


@pytest.mark.asyncio
async def test_resolve_unknown_order_returns_none_when_the_exchange_never_saw_it(service: BinanceService,
                                                                                fake: FakeBinance) -> None:
    fake.on("GET", Endpoint.ORDER, error_json(-2013) + ({},))
    fake.on("GET", Endpoint.ORDER_LIST, error_json(-2011, "Order list does not exist.") + ({},))
    assert await service.resolve_unknown_order("BTCUSDT", "entry-1") is None
    assert await service.resolve_unknown_oco("BTCUSDT", "exit-1") is None


# ---------------------------------------------------------------- secrets


@pytest.mark.asyncio
async def test_secret_and_signature_never_reach_messages_or_logs(fake: FakeBinance, clock: SimulatedClock,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    service = make_service(fake, clock)

    def echo_everything(request: httpx.Request) -> Reply:  # a hostile answer quoting the secret and the query
        return 400, {"code": -1102, "msg": f"bad {SECRET} {request.url.query.decode()}"}, {}

    fake.on("GET", Endpoint.ACCOUNT, echo_everything)
    fake.on("POST", Endpoint.ORDER, timeout)
    fake.on("GET", Endpoint.ORDER, echo_everything)
    errors: list[Exception] = []
    for attempt in (service.get_balances(), service.place_market_order("BTCUSDT", Side.BUY, Decimal("0.01"), "e-1")):
        with pytest.raises(ExchangeError) as caught:
            await attempt
        errors.append(caught.value)
    signatures = [parse_params(r.url.query.decode())["signature"] for _, r in fake.requests
                  if r.url.path in SIGNED_ENDPOINTS]
    assert signatures and "HTTP Request" in caplog.text  # httpx did log the signed URLs, redacted
    for text in [str(e) for e in errors] + [caplog.text]:
        assert SECRET not in text
        assert not any(signature in text for signature in signatures)
