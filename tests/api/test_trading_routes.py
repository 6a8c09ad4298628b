"""Trading, portfolio and account routes: happy paths, status codes and per-user isolation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx

from app.config import Settings
from app.container import Container
from app.domain.clock import SimulatedClock
from app.domain.records import TradeRecord
from app.domain.values import TradeStatus
from app.main import create_app
from tests.conftest import register


async def _seed_trade(container: Container, user_id: int, status: TradeStatus = TradeStatus.CLOSED) -> int:
    async with container.uow() as uow:
        trade = await uow.trades.add(TradeRecord(
            id=0, user_id=user_id, symbol="BTCUSDT", side="BUY", status=status, amount=Decimal("0.00123"),
            price=Decimal("65000.12"), stop_loss=Decimal("64000"), take_profit=Decimal("67000"),
            ai_signal_confidence=72, entry_client_order_id=f"e-{user_id}-{status.value}",
            entry_fee=Decimal("0.08"), executed_at=datetime(2025, 3, 1, 12, 5, tzinfo=UTC), fees=Decimal("0.08"),
        ))
        await uow.commit()
        return trade.id


async def test_start_stop_and_status(client: httpx.AsyncClient) -> None:
    headers, _ = await register(client)
    assert (await client.post("/trading/start", headers=headers)).json() == {"is_active": True}
    status = (await client.get("/trading/status", headers=headers)).json()
    assert status["is_active"] is True
    assert status["open_positions"] == 0 and status["trades_today"] == 0 and status["daily_trade_limit"] == 5
    assert status["analyzer"] == "rules"
    await client.put("/trading/config", headers=headers, json={"analyzer": "gemini"})
    gemini = (await client.get("/trading/status", headers=headers)).json()["analyst"]
    assert gemini["analyzer"] == "gemini" and gemini["configured"] is False and gemini["fallback"] == "hold"
    assert (await client.post("/trading/stop", headers=headers)).json() == {"is_active": False}


async def test_config_partial_update_and_validation(client: httpx.AsyncClient) -> None:
    headers, _ = await register(client)
    config = (await client.get("/trading/config", headers=headers)).json()
    assert config["risk_per_trade_pct"] == "1" and config["analyzer"] == "rules"
    updated = await client.put(
        "/trading/config", headers=headers, json={"symbols": ["BTCUSDT"], "risk_per_trade_pct": "0.5",
                                                    "trading_hours_start": "08:00", "trading_hours_end": "16:00"}
    )
    assert updated.status_code == 200, updated.text
    body = updated.json()
    assert body["symbols"] == ["BTCUSDT"] and body["risk_per_trade_pct"] == "0.5"
    assert body["trading_hours_start"] == "08:00" and body["max_open_positions"] == 3
    bad = await client.put(
        "/trading/config", headers=headers, json={"risk_per_trade_pct": "5", "max_open_positions": 0}
    )
    assert bad.status_code == 422
    assert {e["loc"][-1] for e in bad.json()["detail"]} == {"risk_per_trade_pct", "max_open_positions"}
    unknown = await client.put("/trading/config", headers=headers, json={"symbols": ["DOGEUSDT"]})
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"][-1] == "symbols"
    assert "DOGEUSDT" in unknown.json()["detail"][0]["msg"]
    stray = await client.put("/trading/config", headers=headers, json={"leverage": 10})
    assert stray.status_code == 422
    assert (await client.get("/trading/config", headers=headers)).json()["symbols"] == ["BTCUSDT"]


async def test_trades_listing_filters_and_paging(client: httpx.AsyncClient, container: Container) -> None:
    headers, user_id = await register(client)
    await _seed_trade(container, user_id, TradeStatus.CLOSED)
    await _seed_trade(container, user_id, TradeStatus.FILLED)
    page = (await client.get("/trading/trades", headers=headers)).json()
    assert page["total"] == 2
    assert page["items"][0]["amount"] == "0.00123" and page["items"][0]["price"] == "65000.12"
    assert page["items"][0]["executed_at"] == "2025-03-01T12:05:00Z"
    only_closed = (await client.get("/trading/trades?status=closed", headers=headers)).json()
    assert only_closed["total"] == 1 and only_closed["items"][0]["status"] == "closed"
    paged = (await client.get("/trading/trades?limit=1&offset=1", headers=headers)).json()
    assert len(paged["items"]) == 1 and paged["total"] == 2
    assert (await client.get("/trading/trades?limit=0", headers=headers)).status_code == 422
    assert (await client.get("/trading/trades?limit=501", headers=headers)).status_code == 422


async def test_every_page_knows_the_total_newest_first(client: httpx.AsyncClient, container: Container) -> None:
    """Pages that hold the rest of the trades, pages with more after them, and pages past the end: each total is
    the number of matching trades, however the repository came by it."""
    headers, user_id = await register(client)
    async with container.uow() as uow:
        for n in range(5):
            await uow.trades.add(TradeRecord(
                id=0, user_id=user_id, symbol="ETHUSDT" if n == 4 else "BTCUSDT", side="BUY",
                status=TradeStatus.CLOSED, amount=Decimal("1"), price=Decimal(100 + n), stop_loss=Decimal("90"),
                take_profit=Decimal("120"), ai_signal_confidence=70, entry_client_order_id=f"page-{n}",
                entry_fee=Decimal("0"), executed_at=datetime(2025, 3, 1, 12, min(n, 3), tzinfo=UTC), fees=Decimal("0"),
            ))
        await uow.commit()

    async def page(query: str) -> tuple[list[str], int]:
        body = (await client.get(f"/trading/trades?{query}", headers=headers)).json()
        return [item["price"] for item in body["items"]], body["total"]

    assert await page("limit=5") == (["104", "103", "102", "101", "100"], 5)  # the same minute: the later id first
    assert await page("limit=2") == (["104", "103"], 5)
    assert await page("limit=2&offset=4") == (["100"], 5)
    assert await page("limit=2&offset=10") == ([], 5)
    assert await page("limit=3&symbol=BTCUSDT") == (["103", "102", "101"], 4)
    assert await page("limit=50&symbol=SOLUSDT") == ([], 0)


async def test_other_users_trade_is_404(client: httpx.AsyncClient, container: Container) -> None:
    alice, alice_id = await register(client, "alice")
    bob, _ = await register(client, "bob")
    trade_id = await _seed_trade(container, alice_id, TradeStatus.FILLED)
    assert (await client.get(f"/trading/trades/{trade_id}", headers=alice)).status_code == 200
    assert (await client.get(f"/trading/trades/{trade_id}", headers=bob)).status_code == 404
    assert (await client.post(f"/trading/close/{trade_id}", headers=bob)).status_code == 404
    assert (await client.get("/trading/trades", headers=bob)).json() == {"items": [], "total": 0}
    assert (await client.get("/trading/trades/999999", headers=alice)).status_code == 404


async def test_closing_a_closed_trade_is_409(client: httpx.AsyncClient, container: Container) -> None:
    headers, user_id = await register(client)
    trade_id = await _seed_trade(container, user_id, TradeStatus.CLOSED)
    answer = await client.post(f"/trading/close/{trade_id}", headers=headers)
    assert answer.status_code == 409


async def test_empty_books_report_zeroes(client: httpx.AsyncClient) -> None:
    headers, _ = await register(client)
    assert (await client.get("/trading/positions", headers=headers)).json() == []
    assert (await client.get("/trading/analyses", headers=headers)).json() == {"items": []}
    performance = (await client.get("/portfolio/performance", headers=headers)).json()
    assert performance["total_trades"] == 0 and performance["win_rate"] == "0"
    assert performance["equity_curve"] == [] and performance["max_drawdown_pct"] == "0"


async def test_exchange_keys_are_masked_and_never_returned(client: httpx.AsyncClient) -> None:
    headers, _ = await register(client)
    assert (await client.get("/account/exchange-keys", headers=headers)).status_code == 404
    secret = "S3cretSecretValue9876"
    put = await client.put("/account/exchange-keys", headers=headers,
                           json={"api_key": "ABCDEFGH12345678", "api_secret": secret, "mode": "testnet"})
    assert put.status_code == 200
    assert put.json() == {"api_key_masked": "ABCD********5678", "mode": "testnet"}
    got = await client.get("/account/exchange-keys", headers=headers)
    assert secret not in got.text and "ABCDEFGH12345678" not in got.text
    assert (await client.get("/trading/status", headers=headers)).json()["mode"] == "testnet"
    assert (await client.delete("/account/exchange-keys", headers=headers)).status_code == 204
    assert (await client.get("/trading/status", headers=headers)).json()["mode"] == "paper"


async def test_live_keys_need_confirmation(client: httpx.AsyncClient) -> None:
    headers, _ = await register(client)
    answer = await client.put("/account/exchange-keys", headers=headers,
                              json={"api_key": "ABCDEFGH12345678", "api_secret": "S3cretSecretValue", "mode": "live"})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"][-1] == "confirm_live"
    confirmed = await client.put("/account/exchange-keys", headers=headers, json={
        "api_key": "ABCDEFGH12345678", "api_secret": "S3cretSecretValue", "mode": "live", "confirm_live": True})
    assert confirmed.status_code == 200 and confirmed.json()["mode"] == "live"


async def test_health_metrics_and_openapi(client: httpx.AsyncClient) -> None:
    health = await client.get("/health")
    assert health.status_code == 200 and health.json()["database"] == "ok"
    await client.get("/auth/me")
    metrics = await client.get("/metrics")
    assert 'trdbot_http_requests_total{method="GET",route="/auth/me",status="401"}' in metrics.text
    spec = (await client.get("/openapi.json")).json()
    for path in ("/auth/register", "/trading/close/{trade_id}", "/portfolio/performance", "/account/exchange-keys"):
        assert path in spec["paths"]


async def test_portfolio_shows_the_funded_paper_account(client: httpx.AsyncClient) -> None:
    headers, _ = await register(client)
    body = (await client.get("/portfolio", headers=headers)).json()
    assert body == {"balances": [{"asset": "USDT", "free": "10000", "locked": "0"}], "total_value_usdt": "10000",
                    "mode": "paper"}


async def test_positions_close_and_performance_through_the_api(settings: Settings) -> None:
    clock = SimulatedClock(datetime(2025, 9, 8, tzinfo=UTC))
    container = Container(settings, market_clock=clock)
    transport = httpx.ASGITransport(app=create_app(container))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        headers, _ = await register(client)
        assert (await client.post("/trading/start", headers=headers)).status_code == 200
        positions: list[dict[str, str]] = []
        while not positions:
            clock.advance(timedelta(minutes=5))
            await container.bot.run_cycle(clock.now())
            positions = (await client.get("/trading/positions", headers=headers)).json()
        position = positions[0]
        assert Decimal(position["current_price"]) > 0 and position["oco_order_id"]
        expected = (Decimal(position["current_price"]) - Decimal(position["entry_price"])) * Decimal(position["amount"])
        assert Decimal(position["unrealized_pnl"]) == expected
        status = (await client.get("/trading/status", headers=headers)).json()
        assert status["open_positions"] == len(positions) and status["trades_today"] >= 1
        closed = await client.post(f"/trading/close/{position['trade_id']}", headers=headers)
        assert closed.status_code == 200, closed.text
        assert closed.json()["exit_reason"] == "MANUAL" and closed.json()["status"] == "closed"
        assert (await client.post(f"/trading/close/{position['trade_id']}", headers=headers)).status_code == 409
        performance = (await client.get("/portfolio/performance", headers=headers)).json()
        assert performance["total_trades"] == 1
        assert performance["total_realized_pnl"] == closed.json()["profit_loss"]
        assert len(performance["equity_curve"]) == 1
        decisions = (await client.get("/trading/analyses?limit=500", headers=headers)).json()["items"]
        assert any(d["decision"] == "executed" for d in decisions)
        portfolio = (await client.get("/portfolio", headers=headers)).json()
        assert Decimal(portfolio["total_value_usdt"]) > Decimal("9900")
    await container.db.dispose()


async def test_the_decision_log_shows_what_the_user_saw(settings: Settings) -> None:
    """Holds are nobody's own row: the log answers them from the analyses inside the user's decision spans, as
    skipped with the hold, only for the cycles the user was trading, on the symbols they traded then."""
    clock = SimulatedClock(datetime(2025, 10, 1, 0, 5, tzinfo=UTC))  # holds all night on the bundled candles
    container = Container(settings, market_clock=clock)
    transport = httpx.ASGITransport(app=create_app(container))

    async def cycles(count: int) -> None:
        for _ in range(count):
            clock.advance(timedelta(minutes=5))
            await container.bot.run_cycle(clock.now())

    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        alice, _ = await register(client)
        bob, _ = await register(client, "bob")
        await client.put("/trading/config", headers=alice, json={"symbols": ["BTCUSDT", "ETHUSDT"]})
        await client.put("/trading/config", headers=bob, json={"symbols": ["SOLUSDT"]})
        for headers in (alice, bob):
            assert (await client.post("/trading/start", headers=headers)).status_code == 200
        await cycles(3)
        assert (await client.post("/trading/stop", headers=alice)).status_code == 200
        await cycles(2)  # bob trades on alone: alice saw none of these
        await client.put("/trading/config", headers=alice, json={"symbols": ["ETHUSDT"]})
        assert (await client.post("/trading/start", headers=alice)).status_code == 200
        await cycles(2)
        items = (await client.get("/trading/analyses?limit=500", headers=alice)).json()["items"]
        only_eth = (await client.get("/trading/analyses?symbol=ETHUSDT&limit=3", headers=alice)).json()["items"]
        bobs = (await client.get("/trading/analyses?limit=500", headers=bob)).json()["items"]
    await container.db.dispose()
    assert [(i["symbol"], i["created_at"][11:16]) for i in items] == [  # newest first
        ("ETHUSDT", "00:40"), ("ETHUSDT", "00:35"),
        ("ETHUSDT", "00:20"), ("BTCUSDT", "00:20"), ("ETHUSDT", "00:15"), ("BTCUSDT", "00:15"),
        ("ETHUSDT", "00:10"), ("BTCUSDT", "00:10"),
    ]
    assert {i["signal"] for i in items} == {"hold"}
    assert all(i["decision"] == "skipped" and i["reasons"][0].startswith("hold") for i in items)
    assert [i["id"] for i in only_eth] == [i["id"] for i in items if i["symbol"] == "ETHUSDT"][:3]
    assert len(bobs) == 7 and {i["symbol"] for i in bobs} == {"SOLUSDT"}
