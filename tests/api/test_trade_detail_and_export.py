"""GET /trading/trades/{id}/detail (orders, OCO legs, fills, fees, the decision) and GET /trading/trades.csv."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from app.api import trading
from app.config import Settings
from app.container import Container
from app.domain.clock import SimulatedClock
from app.domain.values import ExitReason
from app.main import create_app
from tests.api.books_seed import closed_trade
from tests.conftest import register


async def test_a_traded_and_closed_position_shows_its_whole_order_path(settings: Settings) -> None:
    clock = SimulatedClock(datetime(2025, 9, 8, tzinfo=UTC))
    container = Container(settings, market_clock=clock)
    transport = httpx.ASGITransport(app=create_app(container))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        headers, _ = await register(client)
        other, _ = await register(client, "bob")
        await client.post("/trading/start", headers=headers)
        positions: list[dict[str, str]] = []
        while not positions:
            clock.advance(timedelta(minutes=5))
            await container.bot.run_cycle(clock.now())
            positions = (await client.get("/trading/positions", headers=headers)).json()
        trade_id = positions[0]["trade_id"]
        clock.advance(timedelta(minutes=30))
        open_detail = (await client.get(f"/trading/trades/{trade_id}/detail", headers=headers)).json()
        closed = (await client.post(f"/trading/close/{trade_id}", headers=headers)).json()
        answer = await client.get(f"/trading/trades/{trade_id}/detail", headers=headers)
        foreign = await client.get(f"/trading/trades/{trade_id}/detail", headers=other)
    await container.db.dispose()
    assert open_detail["duration_seconds"] >= 1800 and open_detail["trade"]["status"] == "filled"
    assert answer.status_code == 200, answer.text
    detail = answer.json()
    assert detail["trade"] == closed
    purposes = [o["purpose"] for o in detail["orders"]]
    assert purposes[0] == "entry" and "protect" in purposes and purposes[-1] == "exit"
    entry = detail["orders"][0]
    assert entry["status"] == "FILLED" and Decimal(entry["executed_qty"]) == Decimal(closed["amount"])
    assert Decimal(entry["average_price"]) == Decimal(entry["cumulative_quote_qty"]) / Decimal(entry["executed_qty"])
    oco = next(o for o in detail["orders"] if o["purpose"] == "protect")
    assert oco["type"] == "OCO" and [leg["kind"] for leg in oco["legs"]] == ["take_profit", "stop_loss"]
    assert oco["legs"][0]["client_order_id"] == oco["client_order_id"] + "-tp"
    assert oco["legs"][1]["price"] == closed["stop_loss"] and oco["status"] in ("ALL_DONE", "CANCELED")
    exit_order = detail["orders"][-1]
    assert exit_order["type"] == "MARKET" and exit_order["side"] == "SELL" and exit_order["status"] == "FILLED"
    fees = detail["fees"]
    assert Decimal(fees["entry_fee"]) + Decimal(fees["exit_fee"]) == Decimal(fees["total"]) == Decimal(closed["fees"])
    decision = detail["decision"]
    assert decision["signal"] == "buy" and decision["decision"] == "executed"
    assert decision["confidence"] == closed["ai_signal_confidence"] and decision["reasoning"]
    assert detail["duration_seconds"] == closed["duration_seconds"]
    assert foreign.status_code == 404


@pytest.mark.parametrize(("trade_id", "code"), [("-1", 404), ("0", 404), ("2147483648", 422), ("abc", 422),
                                                ("1e3", 422), ("99999999999999999999999", 422)])
async def test_hostile_trade_ids(client: httpx.AsyncClient, trade_id: str, code: int) -> None:
    headers, _ = await register(client)
    answer = await client.get(f"/trading/trades/{trade_id}/detail", headers=headers)
    assert answer.status_code == code, answer.text
    if code == 422:
        assert answer.json()["detail"][0]["loc"] == ["path", "trade_id"]


async def test_a_trade_without_orders_or_analysis_still_has_a_detail(client: httpx.AsyncClient,
                                                                     container: Container) -> None:
    headers, user_id = await register(client)
    trade_id = await closed_trade(container, user_id, "BTCUSDT", datetime(2025, 10, 1, tzinfo=UTC), "1",
                                  ExitReason.TAKE_PROFIT, 90, analysis_id=12345)
    detail = (await client.get(f"/trading/trades/{trade_id}/detail", headers=headers)).json()
    assert detail["orders"] == [] and detail["decision"] is None and detail["duration_seconds"] == 90
    assert detail["fees"] == {"entry_fee": "0.01", "exit_fee": "0.01", "total": "0.02"}


async def test_the_export_holds_every_trade_across_internal_pages(client: httpx.AsyncClient, container: Container,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trading, "CSV_PAGE", 3)  # seven trades: pages of 3, 3 and 1
    headers, user_id = await register(client)
    other, bob = await register(client, "bob")
    start = datetime(2025, 10, 1, tzinfo=UTC)
    for i in range(7):
        await closed_trade(container, user_id, "ETHUSDT" if i % 2 else "BTCUSDT", start + timedelta(hours=i),
                           f"{i}.5", ExitReason.TIMEOUT, 60)
    await closed_trade(container, bob, "BTCUSDT", start, "9", ExitReason.TIMEOUT, 60)
    answer = await client.get("/trading/trades.csv", headers=headers)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"] == 'attachment; filename="trades.csv"'
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert len(rows) == 7 and [r["profit_loss"] for r in rows] == [f"{i}.5" for i in reversed(range(7))]
    assert rows[0]["closed_at"] == "2025-10-01T06:00:00Z" and rows[0]["exit_reason"] == "TIMEOUT"
    assert rows[0]["amount"] == "0.01" and rows[0]["fees"] == "0.02"
    page = (await client.get("/trading/trades?limit=500", headers=headers)).json()["items"]
    assert [int(r["id"]) for r in rows] == [t["id"] for t in page]
    eth = list(csv.DictReader(io.StringIO((await client.get("/trading/trades.csv?symbol=ETHUSDT",
                                                            headers=headers)).text)))
    assert len(eth) == 3 and {r["symbol"] for r in eth} == {"ETHUSDT"}
    none = (await client.get("/trading/trades.csv?status=filled", headers=headers)).text
    assert none.splitlines() == [",".join(trading.CSV_COLUMNS)]
    assert len((await client.get("/trading/trades.csv", headers=other)).text.splitlines()) == 2


@pytest.mark.parametrize(("query", "field"), [("status=open", "status"), ("symbol=" + "X" * 21, "symbol")])
async def test_export_filters_are_checked(client: httpx.AsyncClient, query: str, field: str) -> None:
    headers, _ = await register(client)
    answer = await client.get(f"/trading/trades.csv?{query}", headers=headers)
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["query", field]
    assert (await client.get("/trading/trades.csv")).status_code == 401
