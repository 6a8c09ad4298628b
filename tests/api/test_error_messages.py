"""A 422's message is written for the user: a validator's own words, without pydantic's "Value error, " prefix."""

from __future__ import annotations

import httpx

from app.api.errors import readable_message
from tests.conftest import register


async def test_a_validators_message_reaches_the_user_without_the_prefix(client: httpx.AsyncClient) -> None:
    answer = await client.post("/auth/register", json={"username": "a b", "email": "ab@example.com",
                                                       "password": "correct horse"})
    assert answer.status_code == 422
    [error] = answer.json()["detail"]
    assert error["loc"] == ["body", "username"]
    assert error["msg"] == "username must be 3-32 characters of letters, digits, '_', '.' or '-'"


async def test_config_and_key_messages_have_no_prefix(client: httpx.AsyncClient) -> None:
    headers, _ = await register(client)
    null = await client.put("/trading/config", headers=headers, json={"symbols": None})
    assert null.json()["detail"][0]["msg"] == "symbols cannot be null (leave it out to keep its value)"
    live = await client.put("/account/exchange-keys", headers=headers,
                            json={"api_key": "abcdefgh1", "api_secret": "abcdefgh2", "mode": "live"})
    assert live.json()["detail"][0]["msg"] == "live trading with real money needs confirm_live: true"


def test_only_the_leading_prefix_goes() -> None:
    assert readable_message("Value error, x") == "x"
    assert readable_message("Assertion failed, y") == "y"
    assert readable_message("Input should be a valid integer") == "Input should be a valid integer"
    assert readable_message("bad: Value error, kept") == "bad: Value error, kept"
