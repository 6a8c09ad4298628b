"""Case 7: `trdbot serve` writes no bearer token to its logs (uvicorn logs every URL, query string included)."""

from __future__ import annotations

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.security.conftest import ServeProcess


def test_tokens_in_urls_are_redacted_in_the_server_output(served: ServeProcess) -> None:
    answer = httpx.post(f"{served.url}/auth/register",
                        json={"username": "logged", "email": "logged@example.com", "password": "longenough"})
    body = answer.json()
    token, user_id = body["access_token"], body["user"]["id"]
    ws = served.url.replace("http", "ws")
    with connect(f"{ws}/ws/{user_id}?token={token}", open_timeout=10):
        pass
    try:
        with connect(f"{ws}/ws/{user_id}?token={token}x", open_timeout=10) as refused:
            refused.recv(timeout=5)
    except (ConnectionClosed, Exception):
        pass
    httpx.get(f"{served.url}/health?token={token}")
    output = served.stop()
    assert "/ws/" in output and "/health" in output, output
    assert token not in output and token[:40] not in output
    assert "token=[redacted]" in output
