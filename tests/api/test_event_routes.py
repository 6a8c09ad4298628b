"""GET /events: the user's stored events, newest first, filtered by type and time, paged by a cursor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from app.container import Container
from app.domain.records import EventRecord
from tests.conftest import register

START = datetime(2025, 10, 1, tzinfo=UTC)


async def _store(container: Container, user_id: int, kinds: list[str]) -> None:
    async with container.uow() as uow:
        for i, kind in enumerate(kinds):
            await uow.events.add(EventRecord(user_id, kind, START + timedelta(hours=i), {"n": i, "price": "1.50"}))
        await uow.commit()


async def test_newest_first_with_a_cursor_through_every_page(client: httpx.AsyncClient, container: Container) -> None:
    headers, alice = await register(client)
    _, bob = await register(client, "bob")
    await _store(container, alice, ["analysis", "trade_executed", "analysis", "position_closed", "error"])
    await _store(container, bob, ["analysis"] * 3)
    first = (await client.get("/events?limit=2", headers=headers)).json()
    assert [e["data"]["n"] for e in first["items"]] == [4, 3]
    assert first["items"][0] == {"id": first["items"][0]["id"], "type": "error", "time": "2025-10-01T04:00:00Z",
                                 "data": {"n": 4, "price": "1.50"}}
    second = (await client.get(f"/events?limit=2&before_id={first['next_before_id']}", headers=headers)).json()
    third = (await client.get(f"/events?limit=2&before_id={second['next_before_id']}", headers=headers)).json()
    assert [e["data"]["n"] for e in second["items"] + third["items"]] == [2, 1, 0]
    assert third["next_before_id"] is None


async def test_type_and_time_filters(client: httpx.AsyncClient, container: Container) -> None:
    headers, alice = await register(client)
    await _store(container, alice, ["analysis", "trade_executed", "analysis", "position_closed", "error"])
    analyses = (await client.get("/events?type=analysis", headers=headers)).json()["items"]
    assert [e["data"]["n"] for e in analyses] == [2, 0]
    window = (await client.get("/events", headers=headers,
                               params={"since": "2025-10-01T01:00:00Z", "until": "2025-10-01T03:00:00"})).json()
    assert [e["data"]["n"] for e in window["items"]] == [2, 1]
    offset = (await client.get("/events", headers=headers, params={"since": "2025-10-01T05:00:00+02:00"})).json()
    assert [e["data"]["n"] for e in offset["items"]] == [4, 3]


async def test_the_engine_switch_is_an_event_too(client: httpx.AsyncClient) -> None:
    headers, _ = await register(client)
    await client.post("/trading/start", headers=headers)
    [event] = (await client.get("/events?type=status", headers=headers)).json()["items"]
    assert event["data"] == {"is_active": True}


@pytest.mark.parametrize(("query", "field"), [
    ("type=trade", "type"), ("type=" + "a" * 33, "type"), ("type=analysis%00", "type"),
    ("since=yesterday", "since"), ("until=2025-13-01", "until"), ("limit=0", "limit"), ("limit=501", "limit"),
    ("before_id=0", "before_id"), ("before_id=2147483648", "before_id"),
    ("since=2025-10-02T00:00:00Z&until=2025-10-01T00:00:00Z", "until"),
    ("since=9999-12-31T23:59:59-14:00", "since"), ("until=0001-01-01T00:00:00%2B14:00", "until"),
])
async def test_hostile_queries_are_422_naming_the_field(client: httpx.AsyncClient, query: str, field: str) -> None:
    headers, _ = await register(client)
    answer = await client.get(f"/events?{query}", headers=headers)
    assert answer.status_code == 422, answer.text
    error = answer.json()["detail"][0]
    assert error["loc"] == ["query", field]
    if field == "type" and "trade" in query:
        assert error["msg"].startswith("unknown event type 'trade': choose one of analysis,")
    assert (await client.get("/events")).status_code == 401
