"""A request holds at most one database connection: a tiny pool under many concurrent requests answers them all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from app.config import Settings
from app.container import Container
from app.main import create_app
from tests.conftest import register

CONCURRENT = 50


@pytest.fixture
async def small_pool_client(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Container]]:
    """The app on a pool of two connections and no overflow, with a pool timeout long enough that only a
    deadlock (a request waiting for a second connection while holding its first) exhausts it."""
    tight = settings.model_copy(update={"db_pool_size": 2, "db_max_overflow": 0, "db_pool_timeout_seconds": 20})
    container = Container(tight)
    transport = httpx.ASGITransport(app=create_app(container))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client, container
    await container.db.dispose()


async def test_the_pool_is_the_configured_size(small_pool_client: tuple[httpx.AsyncClient, Container]) -> None:
    _, container = small_pool_client
    if container.db.is_sqlite and container.db.url.endswith(":memory:"):
        pytest.skip("an in-memory SQLite database has one shared connection")
    pool = container.db.engine.pool
    assert pool.size() == 2 and pool._max_overflow == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", ["/portfolio", "/trading/trades?limit=50", "/trading/status",
                                  "/portfolio/performance", "/trading/positions"])
async def test_concurrent_requests_on_a_pool_of_two_all_answer(
    small_pool_client: tuple[httpx.AsyncClient, Container], path: str
) -> None:
    client, _ = small_pool_client
    users = [await register(client, f"pool{i}") for i in range(5)]
    answers = await asyncio.gather(*(client.get(path, headers=users[i % len(users)][0]) for i in range(CONCURRENT)))
    assert [a.status_code for a in answers] == [200] * CONCURRENT, answers[0].text


async def test_the_portfolio_reads_the_paper_account_from_the_books(
    small_pool_client: tuple[httpx.AsyncClient, Container]
) -> None:
    """The balances come from the sim_accounts row (the engine's last word), not from a catch-up of the exchange."""
    client, container = small_pool_client
    headers, user_id = await register(client)
    async with container.uow() as uow:
        state = await uow.sim_accounts.load(f"paper-{user_id}")
        assert state is not None
        state["balances"]["USDT"] = ["9000.5", "999.5"]
        state["balances"]["BTC"] = ["0.01", "0"]
        await uow.sim_accounts.save(f"paper-{user_id}", state, container.clock.now())
        await uow.commit()
    body = (await client.get("/portfolio", headers=headers)).json()
    assert body["balances"] == [{"asset": "BTC", "free": "0.01", "locked": "0"},
                                {"asset": "USDT", "free": "9000.5", "locked": "999.5"}]
    assert body["total_value_usdt"] != "10000"


async def test_a_pool_that_stays_busy_answers_503_with_retry_after(settings: Settings) -> None:
    """Past DB_POOL_TIMEOUT_SECONDS without a free connection the request is an overload to retry, not a 500."""
    if settings.database_url.endswith(":memory:"):
        pytest.skip("an in-memory SQLite database has one shared connection")
    tight = settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0, "db_pool_timeout_seconds": 0.2})
    container = Container(tight)
    transport = httpx.ASGITransport(app=create_app(container))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        headers, _ = await register(client)
        async with container.db.engine.connect():  # the pool's only connection, held by someone else
            busy = await client.get("/trading/trades", headers=headers)
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1", busy.text
        assert (await client.get("/trading/trades", headers=headers)).status_code == 200
    await container.db.dispose()
