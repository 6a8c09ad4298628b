"""The API and the engine in different processes: the engine's events reach an API process's WebSockets, and a
manual close asked of an API process is made by the engine that leads (two containers on one database)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from app.config import Settings
from app.container import Container
from app.domain.clock import SimulatedClock
from app.domain.errors import ConfigurationError
from app.domain.records import EventRecord
from app.domain.values import ExitReason
from app.handoffs import CloseDesk
from app.main import create_app
from tests.conftest import register

WHEN = datetime(2025, 3, 1, 12, 5, tzinfo=UTC)


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_text(self, data: str) -> None:
        self.sent.append(data)


@pytest.fixture
async def api_and_engine(settings: Settings) -> AsyncIterator[tuple[Container, Container]]:
    """An API process's container (the engine runs elsewhere) and the engine's, on one database."""
    api = Container(settings.model_copy(update={"manual_close_wait_seconds": 30}), engine_apart=True)
    engine = Container(settings, market_clock=SimulatedClock(datetime(2025, 9, 8, tzinfo=UTC)))
    yield api, engine
    await api.db.dispose()
    await engine.db.dispose()


async def _user(container: Container, name: str = "alice") -> int:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(container)),
                                 base_url="http://test") as client:
        return (await register(client, name))[1]


async def test_the_engines_events_reach_the_api_process_sockets_once(
    api_and_engine: tuple[Container, Container]
) -> None:
    api, engine = api_and_engine
    alice, bob = await _user(api, "alice"), await _user(api, "bob")
    await engine.websockets.publish(alice, "analysis", WHEN, {"n": 0})  # before the feed started: history
    await api.event_feed.step()
    socket = FakeSocket()
    api.websockets.connect(alice, socket)

    await engine.websockets.publish(alice, "trade_executed", WHEN, {"n": 1})
    await engine.websockets.publish(bob, "trade_executed", WHEN, {"n": 2})  # bob has no socket here
    await api.websockets.publish(alice, "status", WHEN, {"n": 3})  # the API process's own: sent at once
    await api.event_feed.step()
    await api.event_feed.step()

    assert [m.split('"data": ')[1] for m in socket.sent] == ['{"n": 3}}', '{"n": 1}}']
    assert engine.event_feed.seen_up_to is None, "a process that serves no API does not read the feed"


async def test_an_event_committed_after_a_later_one_is_not_lost(api_and_engine: tuple[Container, Container]) -> None:
    """Ids are taken at insert and seen at commit: an older id that commits late is still delivered."""
    api, engine = api_and_engine
    if api.db.is_sqlite:
        pytest.skip("SQLite has one writer at a time: its ids commit in order")
    alice = await _user(api)
    socket = FakeSocket()
    api.websockets.connect(alice, socket)
    await api.event_feed.step()
    async with engine.uow() as slow:
        late = await slow.events.add(EventRecord(alice, "late", WHEN, {}))
        await engine.websockets.publish(alice, "early", WHEN, {})
        await api.event_feed.step()
        await slow.commit()
    await api.event_feed.step()
    assert [m.split('"type": "')[1].split('"')[0] for m in socket.sent] == ["early", "late"]
    assert late.id is not None


async def test_a_manual_close_asked_of_an_api_process_is_made_by_the_leading_engine(
    api_and_engine: tuple[Container, Container]
) -> None:
    api, engine = api_and_engine
    clock = engine.market_clock
    assert isinstance(clock, SimulatedClock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(api)), base_url="http://test") as client:
        headers, user_id = await register(client)
        assert (await client.post("/trading/start", headers=headers)).status_code == 200
        positions: list[dict[str, str]] = []
        while not positions:
            clock.advance(timedelta(minutes=5))
            await engine.bot.run_cycle(clock.now())
            positions = (await client.get("/trading/positions", headers=headers)).json()
        trade_id = positions[0]["trade_id"]

        asked = asyncio.create_task(client.post(f"/trading/close/{trade_id}", headers=headers))
        while not (await client.get("/trading/positions", headers=headers)).json()[0]["closing_reason"]:
            await asyncio.sleep(0.05)
        balances_before = (await client.get("/portfolio", headers=headers)).json()["balances"]
        desk = CloseDesk(engine.uow, engine.bot.close_trade, engine.clock, poll_s=1)
        await desk.step()
        closed = await asked

    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "closed" and closed.json()["exit_reason"] == ExitReason.MANUAL.value
    async with engine.uow() as uow:
        assert await uow.positions.for_user(user_id) == []
        assert await uow.positions.closing(ExitReason.MANUAL) == []
    assert any(b["asset"] != "USDT" for b in balances_before), "the coins were still held when the close was asked"
    assert Decimal(closed.json()["exit_price"]) > 0


async def test_an_api_process_answers_409_when_the_engine_does_not_close_in_time(settings: Settings) -> None:
    """No engine leads (or it is slow): the close stays asked for (the next cycle makes it), the answer says so."""
    api = Container(settings.model_copy(update={"manual_close_wait_seconds": 0}), engine_apart=True)
    engine = Container(settings, market_clock=SimulatedClock(datetime(2025, 9, 8, tzinfo=UTC)))
    clock = engine.market_clock
    assert isinstance(clock, SimulatedClock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(api)), base_url="http://test") as client:
        headers, user_id = await register(client)
        await client.post("/trading/start", headers=headers)
        positions: list[dict[str, str]] = []
        while not positions:
            clock.advance(timedelta(minutes=5))
            await engine.bot.run_cycle(clock.now())
            positions = (await client.get("/trading/positions", headers=headers)).json()
        answer = await client.post(f"/trading/close/{positions[0]['trade_id']}", headers=headers)
        assert answer.status_code == 409 and "being closed by the engine" in answer.json()["detail"]
        still = (await client.get("/trading/positions", headers=headers)).json()
        assert still[0]["closing_reason"] == ExitReason.MANUAL.value
    clock.advance(timedelta(minutes=5))
    await engine.bot.run_cycle(clock.now())  # the engine's next cycle finishes the exit it finds under way
    async with engine.uow() as uow:
        assert await uow.positions.for_user(user_id) == []
    await api.db.dispose()
    await engine.db.dispose()


async def test_an_api_process_tells_when_the_leaders_next_cycle_starts(settings: Settings) -> None:
    clock = SimulatedClock(datetime(2025, 9, 8, 12, 3, 20, tzinfo=UTC))
    api = Container(settings, market_clock=clock, engine_apart=True)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(api)), base_url="http://test") as client:
        headers, _ = await register(client)
        status = (await client.get("/trading/status", headers=headers)).json()
    assert status["next_cycle_at"] == "2025-09-08T12:05:00Z"
    await api.db.dispose()


async def test_new_exchange_keys_stored_by_an_api_process_reach_the_engines_adapters(settings: Settings) -> None:
    """The engine keeps one adapter per user, built with the user's keys: a change of keys made through an API
    process must retire it there too (else it trades on with keys the user replaced, or removed)."""
    live = settings.model_copy(update={"use_mock_binance": False})
    api, engine = Container(live, engine_apart=True), Container(live, run_engine=True)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(api)), base_url="http://test") as client:
        headers, user_id = await register(client)
        await engine.event_feed.step()

        async def put_keys(key: str) -> None:
            answer = await client.put("/account/exchange-keys", headers=headers,
                                      json={"api_key": key, "api_secret": "s" * 64, "mode": "testnet"})
            assert answer.status_code == 200, answer.text

        await put_keys("A" * 64)
        first = await engine.exchanges.for_user(user_id)
        assert await engine.exchanges.for_user(user_id) is first, "one adapter per user, kept"
        await put_keys("B" * 64)
        await engine.event_feed.step()
        second = await engine.exchanges.for_user(user_id)
        assert second is not first and second is await engine.exchanges.for_user(user_id)
        assert (await client.delete("/account/exchange-keys", headers=headers)).status_code == 204
        await engine.event_feed.step()
        with pytest.raises(ConfigurationError):
            await engine.exchanges.for_user(user_id)
    for container in (api, engine):
        await container.db.dispose()
