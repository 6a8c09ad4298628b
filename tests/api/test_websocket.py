"""The WebSocket refuses bad tokens with 1008 and delivers a user's events to every socket of that user."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from app.config import Settings
from app.container import Container
from app.main import create_app


@pytest.fixture
def sync_client(settings: Settings) -> TestClient:
    return TestClient(create_app(Container(settings)))


def _register(client: TestClient, name: str) -> tuple[str, int]:
    body = client.post("/auth/register", json={"username": name, "email": f"{name}@x.io", "password": "password1"}).json()
    return body["access_token"], body["user"]["id"]


def _refused(client: TestClient, url: str) -> int:
    with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect(url) as socket:
        socket.receive_text()
    return refused.value.code


def test_refusals_close_with_1008(sync_client: TestClient) -> None:
    with sync_client as client:
        alice_token, alice_id = _register(client, "alice")
        _, bob_id = _register(client, "bob")
        assert _refused(client, f"/ws/{alice_id}") == 1008
        assert _refused(client, f"/ws/{alice_id}?token=not-a-token") == 1008
        assert _refused(client, f"/ws/{bob_id}?token={alice_token}") == 1008


def test_event_reaches_every_socket_of_the_user_and_is_stored(sync_client: TestClient) -> None:
    with sync_client as client:
        token, user_id = _register(client, "alice")
        container: Container = client.app.state.container  # type: ignore[attr-defined]
        when = datetime(2025, 3, 1, 12, 5, tzinfo=UTC)
        with client.websocket_connect(f"/ws/{user_id}?token={token}") as first, \
                client.websocket_connect(f"/ws/{user_id}?token={token}") as second:
            client.portal.call(container.websockets.publish, user_id, "trade_executed", when, {"symbol": "BTCUSDT"})
            for socket in (first, second):
                message = socket.receive_json()
                assert message == {"type": "trade_executed", "time": "2025-03-01T12:05:00Z",
                                   "data": {"symbol": "BTCUSDT"}}

        async def stored() -> list[str]:
            async with container.uow() as uow:
                return [e.type for e in await uow.events.for_user(user_id)]

        assert client.portal.call(stored) == ["trade_executed"]
