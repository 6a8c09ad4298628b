"""GET /portfolio/profit, /portfolio/equity and /portfolio/pairs: figures of the user's own closed trades."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from app.config import Settings
from app.container import Container
from app.domain.clock import SimulatedClock
from app.domain.values import ExitReason
from app.main import create_app
from tests.api.books_seed import closed_trade, open_position
from tests.conftest import register

NOW = datetime(2025, 10, 8, 12, 0, tzinfo=UTC)  # a Wednesday


@pytest.fixture
async def books(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Container, dict[str, str], int]]:
    """Alice's three closed trades (and one of Bob's that she must never see), the market clock at NOW."""
    container = Container(settings, market_clock=SimulatedClock(NOW))
    transport = httpx.ASGITransport(app=create_app(container))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        headers, alice = await register(client)
        _, bob = await register(client, "bob")
        await closed_trade(container, alice, "BTCUSDT", datetime(2025, 9, 30, 10, tzinfo=UTC), "10",
                           ExitReason.TAKE_PROFIT, 3600)
        await closed_trade(container, alice, "ETHUSDT", datetime(2025, 10, 6, 9, tzinfo=UTC), "-4",
                           ExitReason.STOP_LOSS, 1800)
        await closed_trade(container, alice, "BTCUSDT", datetime(2025, 10, 8, 1, tzinfo=UTC), "6",
                           ExitReason.TIMEOUT, 600)
        await closed_trade(container, bob, "SOLUSDT", datetime(2025, 10, 7, 1, tzinfo=UTC), "500",
                           ExitReason.TAKE_PROFIT, 60)
        yield client, container, headers, alice
    await container.db.dispose()


async def test_profit_per_day_newest_first_with_empty_days(books: tuple) -> None:
    client, _, headers, _ = books
    body = (await client.get("/portfolio/profit?period=day&limit=3", headers=headers)).json()
    assert body == {"period": "day", "items": [
        {"start": "2025-10-08T00:00:00Z", "trades": 1, "wins": 1, "losses": 0, "profit": "6", "profit_pct": "0.06"},
        {"start": "2025-10-07T00:00:00Z", "trades": 0, "wins": 0, "losses": 0, "profit": "0", "profit_pct": "0"},
        {"start": "2025-10-06T00:00:00Z", "trades": 1, "wins": 0, "losses": 1, "profit": "-4",
         "profit_pct": "-0.04"},
    ]}


async def test_profit_per_week_from_monday_and_per_month(books: tuple) -> None:
    client, _, headers, _ = books
    weeks = (await client.get("/portfolio/profit?period=week&limit=2", headers=headers)).json()["items"]
    assert [(w["start"], w["trades"], w["profit"], w["profit_pct"]) for w in weeks] == [
        ("2025-10-06T00:00:00Z", 2, "2", "0.02"), ("2025-09-29T00:00:00Z", 1, "10", "0.1")]
    months = (await client.get("/portfolio/profit?period=month&limit=2", headers=headers)).json()["items"]
    assert [(m["start"], m["trades"], m["wins"], m["profit"]) for m in months] == [
        ("2025-10-01T00:00:00Z", 2, 1, "2"), ("2025-09-01T00:00:00Z", 1, 1, "10")]
    default = (await client.get("/portfolio/profit", headers=headers)).json()
    assert default["period"] == "day" and len(default["items"]) == 30


async def test_performance_curve_and_drawdown_of_the_closed_trades(books: tuple) -> None:
    client, _, headers, _ = books
    body = (await client.get("/portfolio/performance", headers=headers)).json()
    assert [(p["time"], p["equity"]) for p in body["equity_curve"]] == [
        ("2025-09-30T10:00:00Z", "10010"), ("2025-10-06T09:00:00Z", "10006"), ("2025-10-08T01:00:00Z", "10012")]
    assert body["max_drawdown_pct"] == "0.04"  # 10010 -> 10006


async def test_equity_curve_drawdown_and_open_positions_at_market(books: tuple) -> None:
    client, container, headers, alice = books
    body = (await client.get("/portfolio/equity", headers=headers)).json()
    assert body["start_balance"] == "10000" and body["open_value"] == "0" and body["total_points"] == 4
    assert [(p["time"], p["realised"], p["equity"]) for p in body["points"]] == [
        ("2025-09-30T10:00:00Z", "10", "10010"), ("2025-10-06T09:00:00Z", "6", "10006"),
        ("2025-10-08T01:00:00Z", "12", "10012"), ("2025-10-08T12:00:00Z", "12", "10012")]
    assert [d["pct"] for d in body["drawdown"]] == ["0", "0.04", "0", "0"]
    assert body["max_drawdown_pct"] == "0.04"
    await open_position(container, alice, "BTCUSDT", "0.001", "50000", datetime(2025, 10, 8, 11, tzinfo=UTC))
    price = Decimal((await client.get("/trading/positions", headers=headers)).json()[0]["current_price"])
    marked = (await client.get("/portfolio/equity?limit=1", headers=headers)).json()
    assert Decimal(marked["open_value"]) == price * Decimal("0.001")
    assert Decimal(marked["unrealized_pnl"]) == (price - 50000) * Decimal("0.001")
    assert len(marked["points"]) == 1 and marked["total_points"] == 4
    assert Decimal(marked["points"][0]["equity"]) == Decimal("10012") + Decimal(marked["unrealized_pnl"])


async def test_pairs_exit_reasons_profit_factor_and_expectancy(books: tuple) -> None:
    client, _, headers, _ = books
    body = (await client.get("/portfolio/pairs", headers=headers)).json()
    assert body == {
        "pairs": [
            {"symbol": "BTCUSDT", "trades": 2, "wins": 2, "win_rate": "100", "profit": "16", "avg_duration_s": 2100},
            {"symbol": "ETHUSDT", "trades": 1, "wins": 0, "win_rate": "0", "profit": "-4", "avg_duration_s": 1800},
        ],
        "trades": 3, "exit_reasons": {"TAKE_PROFIT": 1, "STOP_LOSS": 1, "TIMEOUT": 1},
        "profit_factor": "4", "expectancy": "4",
    }


async def test_a_new_user_sees_zeroes(client: httpx.AsyncClient) -> None:
    headers, _ = await register(client)
    pairs = (await client.get("/portfolio/pairs", headers=headers)).json()
    assert pairs == {"pairs": [], "trades": 0, "exit_reasons": {}, "profit_factor": None, "expectancy": "0"}
    curve = (await client.get("/portfolio/equity", headers=headers)).json()
    assert curve["max_drawdown_pct"] == "0" and [p["equity"] for p in curve["points"]] == ["10000"]
    days = (await client.get("/portfolio/profit?limit=1", headers=headers)).json()["items"]
    assert days[0]["trades"] == 0


@pytest.mark.parametrize(("query", "field"), [
    ("/portfolio/profit?period=year", "period"), ("/portfolio/profit?limit=0", "limit"),
    ("/portfolio/profit?limit=367", "limit"), ("/portfolio/profit?limit=1e400", "limit"),
    ("/portfolio/profit?limit=99999999999999999999999", "limit"), ("/portfolio/equity?limit=-1", "limit"),
    ("/portfolio/equity?limit=%00", "limit"),
])
async def test_hostile_queries_are_422_naming_the_field(client: httpx.AsyncClient, query: str, field: str) -> None:
    headers, _ = await register(client)
    answer = await client.get(query, headers=headers)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"] == ["query", field]


@pytest.mark.parametrize("path", ["/portfolio/profit", "/portfolio/equity", "/portfolio/pairs"])
async def test_no_token_is_401(client: httpx.AsyncClient, path: str) -> None:
    assert (await client.get(path)).status_code == 401
