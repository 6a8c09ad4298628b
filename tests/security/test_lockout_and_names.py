"""Case 4: a lockout cannot be turned against the owner; per-address backoff; names unique whatever their case;
patterns match the whole string."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from app.domain.clock import SimulatedClock
from tests.conftest import register
from tests.security.conftest import client_at

ATTACKER, OWNER = "203.0.113.9", "198.51.100.7"


async def test_an_attacker_cannot_lock_the_owner_out(clocked_app: FastAPI) -> None:
    async with client_at(clocked_app, ATTACKER) as attacker, client_at(clocked_app, OWNER) as owner:
        await register(owner, "victim")
        for _ in range(5):
            wrong = await attacker.post("/auth/login", json={"username": "victim", "password": "guess guess"})
            assert wrong.status_code == 401
        refused = await attacker.post("/auth/login", json={"username": "VICTIM", "password": "guess again"})
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
        mine = await owner.post("/auth/login", json={"username": "victim", "password": "correct horse"})
        assert mine.status_code == 200, mine.text


async def test_an_address_that_keeps_failing_waits_twice_as_long_each_time(
    clocked_app: FastAPI, clock: SimulatedClock,
) -> None:
    async with client_at(clocked_app, ATTACKER) as attacker:
        async def attempt(i: int) -> httpx.Response:
            return await attacker.post("/auth/login", json={"username": f"user{i}", "password": "guess guess"})

        for i in range(10):  # LOGIN_ADDRESS_FREE_ATTEMPTS
            assert (await attempt(i)).status_code == 401
        waits = []
        for i in range(10, 15):
            assert (await attempt(i)).status_code == 401  # checked, and it sets the next wait
            refused = await attempt(100 + i)
            assert refused.status_code == 429
            waits.append(int(refused.headers["Retry-After"]))
            clock.advance(timedelta(seconds=waits[-1]))
        assert waits == [1, 2, 4, 8, 16]


async def test_usernames_and_emails_are_unique_whatever_their_case(client: httpx.AsyncClient) -> None:
    await register(client, "alice")
    for username, email in (("ALICE", "new@example.com"), ("Alice", "other@example.com"),
                            ("bob", "ALICE@example.com"), ("bob", "Alice@Example.COM")):
        answer = await client.post("/auth/register", json={"username": username, "email": email,
                                                           "password": "longenough"})
        assert answer.status_code == 409, (username, email, answer.text)
    login = await client.post("/auth/login", json={"username": "ALICE", "password": "correct horse"})
    assert login.status_code == 200


@pytest.mark.parametrize("username", ["demo\n", "demo\r\n", "\ndemo", "de\nmo", "demo "])
async def test_usernames_with_line_breaks_or_spaces_are_refused(client: httpx.AsyncClient, username: str) -> None:
    answer = await client.post("/auth/register", json={"username": username, "email": "d@example.com",
                                                       "password": "longenough"})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "username"]


@pytest.mark.parametrize("field", ["api_key", "api_secret"])
async def test_exchange_keys_with_a_trailing_newline_are_refused(client: httpx.AsyncClient, field: str) -> None:
    headers, _ = await register(client)
    body = {"api_key": "abcdefgh1234", "api_secret": "secret12345678", "mode": "testnet"} | {field: "abcdefgh123\n"}
    answer = await client.put("/account/exchange-keys", json=body, headers=headers)
    assert answer.status_code == 422
    assert [e["loc"] for e in answer.json()["detail"]] == [["body", field]]
