"""Case 8: bodies over MAX_BODY_BYTES are refused (413); 422s repeat no secret and no large input; decimals
beyond the column's precision are refused."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import register


async def test_a_body_over_the_limit_is_413_by_its_length(client: httpx.AsyncClient) -> None:
    big = b'{"username": "' + b"a" * 2_000_000 + b'", "password": "x"}'
    answer = await client.post("/auth/login", content=big, headers={"content-type": "application/json"})
    assert answer.status_code == 413
    assert len(answer.content) < 200 and "65536" in answer.json()["detail"]


async def test_a_streamed_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"username": "'
        for _ in range(100):
            yield b"a" * 10_000
        yield b'", "password": "x"}'

    answer = await client.post("/auth/login", content=chunks(), headers={"content-type": "application/json"})
    assert answer.status_code == 413


async def test_a_large_string_under_the_limit_is_not_echoed(client: httpx.AsyncClient) -> None:
    answer = await client.post("/auth/register", json={"username": "u" * 50_000, "email": "x@example.com",
                                                       "password": "longenough"})
    assert answer.status_code == 422
    assert len(answer.content) < 1000, len(answer.content)
    assert answer.json()["detail"][0]["loc"] == ["body", "username"]


async def test_a_rejected_api_secret_is_never_repeated(client: httpx.AsyncClient) -> None:
    headers, _ = await register(client)
    secret = "Sup3rSecretValue-with-a-dash"
    answer = await client.put("/account/exchange-keys", headers=headers,
                              json={"api_key": "abcdefgh1234", "api_secret": secret, "mode": "testnet"})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "api_secret"]
    assert secret not in answer.text


async def test_a_missing_field_does_not_repeat_the_rest_of_the_body(client: httpx.AsyncClient) -> None:
    password = "my very own password"
    answer = await client.post("/auth/register", json={"username": "nomail", "password": password})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "email"]
    assert password not in answer.text
    keys = await client.put("/account/exchange-keys", json={"api_secret": "abcdefgh12345678"},
                            headers=(await register(client))[0])
    assert keys.status_code == 422 and "abcdefgh12345678" not in keys.text


@pytest.mark.parametrize(("field", "value"), [
    ("max_balance_trade_ratio", "0." + "0" * 40 + "1"),
    ("max_balance_trade_ratio", "0." + "1" * 19),
    ("risk_per_trade_pct", "1." + "0" * 30 + "1"),
])
async def test_decimals_beyond_the_columns_precision_are_a_422(client: httpx.AsyncClient, field: str,
                                                                value: str) -> None:
    headers, _ = await register(client)
    answer = await client.put("/trading/config", json={field: value}, headers=headers)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"] == ["body", field]
    config = await client.get("/trading/config", headers=headers)
    assert config.json()[field] != value
