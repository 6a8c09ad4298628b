"""Case 6: a refused WebSocket is accepted and closed with 1008 (a browser sees 1006 for a handshake refusal)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from app.config import Settings
from app.container import Container
from app.devtools.simulator_thread import SimulatorThread
from app.main import create_app


@pytest.fixture
def server(settings: Settings) -> Iterator[str]:
    """The app served by uvicorn on a free port, as a browser meets it."""
    thread = SimulatorThread(create_app(Container(settings))).start()
    yield thread.base_url
    thread.stop()


def _close_code(url: str) -> int:
    """Connects (the handshake must succeed), then waits for the server's close before any message."""
    socket = connect(url, open_timeout=5)
    with socket, pytest.raises(ConnectionClosed) as closed:
        socket.recv(timeout=5)
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code


def test_bad_missing_and_foreign_tokens_are_closed_with_1008_after_the_handshake(server: str) -> None:
    users = [httpx.post(f"{server}/auth/register", json={"username": name, "email": f"{name}@example.com",
                                                         "password": "longenough"}).json() for name in ("ann", "ben")]
    (ann_token, ann_id), ben_id = (users[0]["access_token"], users[0]["user"]["id"]), users[1]["user"]["id"]
    ws = server.replace("http", "ws")
    assert _close_code(f"{ws}/ws/{ann_id}") == 1008
    assert _close_code(f"{ws}/ws/{ann_id}?token=not-a-token") == 1008
    assert _close_code(f"{ws}/ws/{ben_id}?token={ann_token}") == 1008
    assert _close_code(f"{ws}/ws/not-a-number?token={ann_token}") == 1008
    owner = connect(f"{ws}/ws/{ann_id}?token={ann_token}", open_timeout=5)
    with owner, pytest.raises(TimeoutError):  # the owner's socket stays open
        owner.recv(timeout=0.3)
