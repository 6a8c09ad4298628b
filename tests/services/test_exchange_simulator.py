"""The exchange simulator on the wire: keys, signatures, timestamps, klines, parameters, weights, faults, CLI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import httpx
import pytest
from exchange_sim_builders import FLAT, KEY, SECRET, START_BALANCES, at, make_market, write_candles

from app.cli import build_exchange_simulator, build_parser, main, parse_balance
from app.config import BUNDLED_DATA_DIR
from app.devtools.faults import FaultKind, FaultPlan, FaultRule, FaultStage, normalize_endpoint
from app.devtools.simulator import ApiAccount, ExchangeSimulator, create_simulator_app
from app.domain.clock import SimulatedClock, ms_from_utc
from app.domain.values import Timeframe
from app.marketdata.candles import CandleStore
from app.venues.binance.client import BinanceService
from app.venues.binance.protocol import (
    API_KEY_HEADER,
    RETRY_AFTER_HEADER,
    USED_WEIGHT_HEADER,
    Endpoint,
    signed_query,
)
from app.venues.paper.accounts import InMemorySimAccountStore
from app.venues.paper.exchange import MockBinanceService
from app.venues.paper.market import SimulatedMarket


@dataclass
class Wire:
    client: httpx.AsyncClient
    simulator: ExchangeSimulator
    clock: SimulatedClock

    async def signed(self, method: str, path: str, params: list[tuple[str, str]], *, key: str = KEY,
                     secret: str = SECRET, timestamp_ms: int | None = None, in_body: bool = False) -> httpx.Response:
        stamp = timestamp_ms if timestamp_ms is not None else ms_from_utc(self.clock.now())
        query = signed_query([*params, ("timestamp", str(stamp))], secret)
        headers = {API_KEY_HEADER: key} if key else {}
        if in_body:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            return await self.client.request(method, path, content=query, headers=headers)
        return await self.client.request(method, f"{path}?{query}", headers=headers)


async def wire_for(market: SimulatedMarket, clock: SimulatedClock, **options: Any) -> AsyncIterator[Wire]:
    simulator = ExchangeSimulator(market, clock, [ApiAccount(KEY, SECRET, START_BALANCES)], **options)
    await simulator.open()  # ASGITransport runs no lifespan
    transport = httpx.ASGITransport(app=create_simulator_app(simulator))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
        yield Wire(client, simulator, clock)


@pytest.fixture
async def wire(tmp_path: Path) -> AsyncIterator[Wire]:
    async for item in wire_for(make_market(tmp_path), SimulatedClock(at(122))):
        yield item


def error_of(response: httpx.Response) -> tuple[int, int]:
    return response.status_code, response.json()["code"]


async def test_keys_signatures_and_timestamps_are_checked_like_binance(wire: Wire) -> None:
    account = [("omitZeroBalances", "true")]
    now_ms = ms_from_utc(wire.clock.now())
    assert error_of(await wire.signed("GET", Endpoint.ACCOUNT, account, key="")) == (401, -2014)
    assert error_of(await wire.signed("GET", Endpoint.ACCOUNT, account, key="someone-else")) == (401, -2015)
    assert error_of(await wire.signed("GET", Endpoint.ACCOUNT, account, secret="wrong")) == (400, -1022)
    stale = await wire.signed("GET", Endpoint.ACCOUNT, account, timestamp_ms=now_ms - 5001)
    assert error_of(stale) == (400, -1021) and "recvWindow" in stale.json()["msg"]
    ahead = await wire.signed("GET", Endpoint.ACCOUNT, account, timestamp_ms=now_ms + 1000)
    assert error_of(ahead) == (400, -1021) and "ahead" in ahead.json()["msg"]
    unsigned = await wire.client.get(Endpoint.ACCOUNT, headers={API_KEY_HEADER: KEY})
    assert error_of(unsigned) == (400, -1102)
    ok = await wire.signed("GET", Endpoint.ACCOUNT, account + [("recvWindow", "10000")], timestamp_ms=now_ms - 9000)
    assert ok.status_code == 200 and ok.json()["balances"] == [{"asset": "USDT", "free": "10000", "locked": "0"}]


async def test_signature_over_a_form_body_is_accepted(wire: Wire) -> None:
    params = [("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "MARKET"), ("quantity", "0.5"),
              ("newClientOrderId", "body-1"), ("newOrderRespType", "ACK")]
    answer = await wire.signed("POST", Endpoint.ORDER, params, in_body=True)
    assert answer.status_code == 200
    assert answer.json() == {"symbol": "BTCUSDT", "orderId": 1, "orderListId": -1, "clientOrderId": "body-1",
                             "transactTime": ms_from_utc(at(122))}


async def test_klines_end_with_the_open_candle_built_only_from_closed_5m_candles(wire: Wire) -> None:
    wire.clock.set(at(131))
    rows = (await wire.client.get(Endpoint.KLINES, params={"symbol": "BTCUSDT", "interval": "1h", "limit": "2"})).json()
    assert [r[0] for r in rows] == [ms_from_utc(at(60)), ms_from_utc(at(120))]
    live = rows[-1]
    assert live[1:5] == ["100", "111", "99.5", "105"]  # candles 24 and 25; candle 26 has not closed at 02:11
    assert live[6] == ms_from_utc(at(180)) - 1 > ms_from_utc(wire.clock.now())
    assert len(live) == 12 and all(isinstance(v, str) for v in live[1:6])
    window = {"symbol": "BTCUSDT", "interval": "5m", "startTime": str(ms_from_utc(at(5))), "limit": "2"}
    assert [r[0] for r in (await wire.client.get(Endpoint.KLINES, params=window)).json()] == [
        ms_from_utc(at(5)), ms_from_utc(at(10))]
    bad_interval = await wire.client.get(Endpoint.KLINES, params={"symbol": "BTCUSDT", "interval": "2m"})
    assert error_of(bad_interval) == (400, -1120)
    assert error_of(await wire.client.get(Endpoint.TICKER_PRICE, params={"symbol": "DOGEUSDT"})) == (400, -1121)


@pytest.mark.parametrize(("quantity", "code"), [("1E-5", -1100), ("0.000000001", -1111), ("", -1102)])
async def test_malformed_quantities_are_refused(wire: Wire, quantity: str, code: int) -> None:
    params = [("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "MARKET"), ("quantity", quantity)]
    assert error_of(await wire.signed("POST", Endpoint.ORDER, params)) == (400, code)
    assert await wire.simulator.account(KEY).list_orders() == []


async def test_only_market_orders_and_protective_ocos_are_simulated(wire: Wire) -> None:
    limit = [("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "LIMIT"), ("quantity", "1"), ("price", "90")]
    assert error_of(await wire.signed("POST", Endpoint.ORDER, limit)) == (400, -1013)
    oco = [("symbol", "BTCUSDT"), ("side", "SELL"), ("quantity", "1"), ("aboveType", "TAKE_PROFIT"),
           ("abovePrice", "110"), ("belowType", "STOP_LOSS_LIMIT"), ("belowStopPrice", "95"), ("belowPrice", "94"),
           ("belowTimeInForce", "GTC")]
    assert error_of(await wire.signed("POST", Endpoint.ORDER_LIST_OCO, oco)) == (400, -1158)


async def test_every_answer_carries_the_used_weight_and_the_limit_is_enforced(tmp_path: Path) -> None:
    async for wire in wire_for(make_market(tmp_path), SimulatedClock(at(122)), weight_limit=30):
        first = await wire.client.get(Endpoint.EXCHANGE_INFO)
        second = await wire.client.get(Endpoint.PING)
        assert (first.headers[USED_WEIGHT_HEADER], second.headers[USED_WEIGHT_HEADER]) == ("20", "21")
        limited = await wire.client.get(Endpoint.EXCHANGE_INFO)
        assert error_of(limited) == (429, -1003) and limited.headers[RETRY_AFTER_HEADER] == "60"  # to 02:03
        banned = await wire.client.get(Endpoint.PING)  # still sending inside the window: banned
        assert error_of(banned) == (418, -1003) and USED_WEIGHT_HEADER in banned.headers
        wire.clock.set(at(123))
        assert (await wire.client.get(Endpoint.PING)).headers[USED_WEIGHT_HEADER] == "1"


async def test_simulator_on_the_bundled_real_candles_matches_the_mock(tmp_path: Path) -> None:
    candles = CandleStore.load(BUNDLED_DATA_DIR, symbols=["ETHUSDT"])
    market, clock = SimulatedMarket(candles), SimulatedClock(candles.span("ETHUSDT")[0].replace(day=20, minute=7))
    mock = await MockBinanceService.open_account("m", market, InMemorySimAccountStore(), clock, START_BALANCES)
    simulator = ExchangeSimulator(market, clock, [ApiAccount(KEY, SECRET, START_BALANCES)])
    await simulator.open()
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_simulator_app(simulator)))
    service = BinanceService(KEY, SECRET, "http://sim", clock, http=http)
    for timeframe in Timeframe:
        assert await service.get_klines("ETHUSDT", timeframe, 50) == await mock.get_klines("ETHUSDT", timeframe, 50)
    assert await service.get_symbol_price("ETHUSDT") == await mock.get_symbol_price("ETHUSDT")
    assert await service.get_symbol_rules("ETHUSDT") == await mock.get_symbol_rules("ETHUSDT")
    await http.aclose()


def test_fault_rules_from_specs_and_json() -> None:
    rule = FaultRule.from_spec("kind=server_error,endpoint=POST orderList/oco,status=503,execute=true,times=2")
    assert (rule.kind, rule.status, rule.execute, rule.times, rule.stage) == (
        FaultKind.SERVER_ERROR, 503, True, 2, FaultStage.AFTER)
    assert normalize_endpoint(rule.endpoint) == ("POST", "/api/v3/orderList/oco")
    assert rule.matches("POST", "/api/v3/orderList/oco") and not rule.matches("GET", "/api/v3/orderList/oco")
    plan = FaultPlan.from_json('{"faults": [{"kind": "rate_limit", "endpoint": "*", "skip": 1, "times": 1}]}')
    hits = [bool(plan.take("GET", "/api/v3/ping", FaultStage.BEFORE)) for _ in range(3)]
    assert hits == [False, True, False]
    with pytest.raises(ValueError, match="unknown fault field"):
        FaultRule.from_spec("kind=latency,delay=1")
    with pytest.raises(ValueError, match="code"):
        FaultRule.from_dict({"kind": "reject"})
    with pytest.raises(ValueError):
        FaultRule.from_dict({"kind": "meteor"})


def test_cli_builds_funded_accounts_and_faults(tmp_path: Path) -> None:
    make_market(tmp_path)
    fault_file = tmp_path / "faults.json"
    fault_file.write_text('[{"kind": "partial_fill", "endpoint": "POST order", "fill_ratio": "0.5"}]')
    args = build_parser().parse_args([
        "exchange-sim", "--data", str(tmp_path), "--start", "2025-01-01T02:00", "--speed", "60",
        "--api-key", "k1", "--api-secret", "s1", "--api-key", "k2", "--api-secret", "s2",
        "--balance", "USDT=500", "--balance", "btc=0.5", "--faults", str(fault_file),
        "--fault", "kind=latency,endpoint=klines,delay_s=0.2,times=all",
    ])
    simulator, start = build_exchange_simulator(args)
    assert start == at(120)
    assert [r.kind for r in simulator.faults.rules] == [FaultKind.PARTIAL_FILL, FaultKind.LATENCY]
    assert simulator.faults.rules[1].times is None
    assert parse_balance("btc=0.5") == ("BTC", D("0.5"))
    with pytest.raises(ValueError):
        parse_balance("USDT")


def test_cli_refuses_a_start_outside_the_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_market(tmp_path)
    assert main(["exchange-sim", "--data", str(tmp_path), "--start", "2019-01-01"]) == 2
    assert "outside the candles" in capsys.readouterr().err


async def test_ticker_24hr_sums_the_closed_5m_candles_of_the_last_day(wire: Wire) -> None:
    wire.clock.set(at(150))  # candles 0-29 have closed: 25 flat ones, then 105, 105, 99, 99, 91
    answer = await wire.client.get(Endpoint.TICKER_24HR, params={"symbol": "BTCUSDT"})
    ticker = answer.json()
    assert answer.headers[USED_WEIGHT_HEADER] == "2"
    assert {k: ticker[k] for k in ("openPrice", "highPrice", "lowPrice", "lastPrice", "prevClosePrice")} == {
        "openPrice": "100", "highPrice": "111", "lowPrice": "90", "lastPrice": "91", "prevClosePrice": "100"}
    assert (ticker["priceChange"], ticker["priceChangePercent"]) == ("-9", "-9.000")
    assert (ticker["volume"], ticker["quoteVolume"], ticker["weightedAvgPrice"]) == ("30", "2999", "99.96666667")
    assert (ticker["bidPrice"], ticker["askPrice"]) == ("90.98", "91.02")  # a market sell / buy with 0.02 % slippage
    assert ticker["closeTime"] - ticker["openTime"] == 86_400_000 and ticker["closeTime"] == ms_from_utc(at(150))
    assert (ticker["firstId"], ticker["lastId"], ticker["count"]) == (-1, -1, 0)
    every = await wire.client.get(Endpoint.TICKER_24HR)
    listed = await wire.client.get(Endpoint.TICKER_24HR, params={"symbols": '["BTCUSDT"]'})
    assert every.json() == listed.json() == [ticker]
    assert (every.headers[USED_WEIGHT_HEADER], listed.headers[USED_WEIGHT_HEADER]) == ("82", "84")
    unknown = await wire.client.get(Endpoint.TICKER_24HR, params={"symbol": "DOGEUSDT"})
    assert error_of(unknown) == (400, -1121)


async def test_ticker_24hr_leaves_out_candles_older_than_a_day(tmp_path: Path) -> None:
    path = [FLAT] * 300
    path[5] = ("100", "500", "99.5", "100")  # more than a day before the ticker's time
    path[11] = ("100", "101", "99.5", "101")  # the close just before the day
    write_candles(tmp_path, path)
    market = SimulatedMarket(CandleStore.load(tmp_path))
    async for wire in wire_for(market, SimulatedClock(at(300 * 5))):
        ticker = (await wire.client.get(Endpoint.TICKER_24HR, params={"symbol": "BTCUSDT"})).json()
        assert (ticker["highPrice"], ticker["prevClosePrice"], ticker["volume"]) == ("100.5", "101", "288")
