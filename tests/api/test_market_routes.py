"""Market routes for the dashboard's chart: closed candles at the market clock and the engine's S/R levels."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import httpx

from app.container import Container
from app.domain.clock import SimulatedClock
from tests.conftest import register

NOW = datetime(2025, 10, 1, 12, 7, tzinfo=UTC)


async def test_candles_are_closed_at_market_time_with_money_as_strings(
    client: httpx.AsyncClient, container: Container
) -> None:
    container.rebind_market_clock(SimulatedClock(NOW))
    headers, _ = await register(client)
    answer = await client.get("/market/candles?symbol=BTCUSDT&timeframe=15m&limit=3", headers=headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["symbol"] == "BTCUSDT" and body["timeframe"] == "15m"
    times = [c["time"] for c in body["items"]]
    # 12:00 is still open at 12:07, so the last closed 15m candle opened at 11:45
    assert times == ["2025-10-01T11:15:00Z", "2025-10-01T11:30:00Z", "2025-10-01T11:45:00Z"]
    candle = body["items"][-1]
    assert all(isinstance(candle[k], str) for k in ("open", "high", "low", "close", "volume"))
    assert Decimal(candle["low"]) <= Decimal(candle["close"]) <= Decimal(candle["high"])


async def test_candles_default_limit_and_validation(client: httpx.AsyncClient, container: Container) -> None:
    container.rebind_market_clock(SimulatedClock(NOW))
    headers, _ = await register(client)
    default = await client.get("/market/candles?symbol=ETHUSDT", headers=headers)
    assert default.status_code == 200 and len(default.json()["items"]) == 200
    for query, field in (("symbol=DOGEUSDT", "symbol"), ("symbol=BTCUSDT&timeframe=3m", "timeframe"),
                         ("symbol=BTCUSDT&limit=0", "limit"), ("symbol=BTCUSDT&limit=1001", "limit")):
        bad = await client.get(f"/market/candles?{query}", headers=headers)
        assert bad.status_code == 422, query
        assert bad.json()["detail"][0]["loc"][-1] == field


async def test_market_routes_need_a_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/market/candles?symbol=BTCUSDT")).status_code == 401
    assert (await client.get("/market/levels?symbol=BTCUSDT")).status_code == 401


async def test_levels_split_into_support_below_and_resistance_above_the_price(
    client: httpx.AsyncClient, container: Container
) -> None:
    container.rebind_market_clock(SimulatedClock(NOW))
    headers, _ = await register(client)
    answer = await client.get("/market/levels?symbol=BTCUSDT", headers=headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["time"] == "2025-10-01T12:07:00Z"
    last = Decimal(body["last_price"])
    assert body["items"], "100 candles of 15m swings should give at least one level"
    for level in body["items"]:
        price = Decimal(level["price"])
        assert level["kind"] == ("support" if price < last else "resistance")
        assert level["touches"] >= 1 and level["strength"] >= 0
        assert price == price.quantize(Decimal("0.01"))  # on BTCUSDT's tick
    distances = [abs(Decimal(level["price"]) - last) for level in body["items"]]
    assert distances == sorted(distances)
    assert (await client.get("/market/levels?symbol=DOGEUSDT", headers=headers)).status_code == 422
