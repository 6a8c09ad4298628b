"""Registration, login, throttling and token checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import jwt

from tests.conftest import register


async def test_register_returns_token_and_user(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        "/auth/register", json={"username": "alice", "email": "alice@example.com", "password": "longenough"}
    )
    assert answer.status_code == 201
    body = answer.json()
    assert body["token_type"] == "bearer"
    assert body["user"]["username"] == "alice"
    me = await client.get("/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json()["email"] == "alice@example.com"
    assert me.json()["created_at"].endswith("Z")


async def test_register_creates_inactive_config(client: httpx.AsyncClient) -> None:
    headers, _ = await register(client)
    config = await client.get("/trading/config", headers=headers)
    status = await client.get("/trading/status", headers=headers)
    assert config.status_code == 200 and status.status_code == 200
    assert status.json()["is_active"] is False
    assert status.json()["mode"] == "paper"


async def test_duplicate_username_or_email_is_409(client: httpx.AsyncClient) -> None:
    await register(client, "alice")
    same_name = await client.post(
        "/auth/register", json={"username": "alice", "email": "other@example.com", "password": "longenough"}
    )
    same_email = await client.post(
        "/auth/register", json={"username": "other", "email": "alice@example.com", "password": "longenough"}
    )
    assert same_name.status_code == 409 and "username" in same_name.json()["detail"]
    assert same_email.status_code == 409 and "email" in same_email.json()["detail"]


async def test_register_validation_names_each_field(client: httpx.AsyncClient) -> None:
    answer = await client.post("/auth/register", json={"username": "a!", "email": "not-an-email", "password": "short"})
    assert answer.status_code == 422
    fields = {tuple(err["loc"])[-1] for err in answer.json()["detail"]}
    assert fields == {"username", "email", "password"}


async def test_login_right_and_wrong_password(client: httpx.AsyncClient) -> None:
    await register(client, "bob")
    ok = await client.post("/auth/login", json={"username": "bob", "password": "correct horse"})
    assert ok.status_code == 200
    assert ok.json()["expires_in"] > 0
    bad = await client.post("/auth/login", json={"username": "bob", "password": "wrong horse"})
    assert bad.status_code == 401
    nobody = await client.post("/auth/login", json={"username": "nobody", "password": "wrong horse"})
    assert nobody.status_code == 401


async def test_repeated_failures_are_throttled(client: httpx.AsyncClient) -> None:
    await register(client, "carol")
    for _ in range(5):
        assert (await client.post("/auth/login", json={"username": "carol", "password": "nope nope"})).status_code == 401
    locked = await client.post("/auth/login", json={"username": "carol", "password": "correct horse"})
    assert locked.status_code == 429
    assert int(locked.headers["Retry-After"]) > 0


async def test_missing_bad_and_foreign_tokens_are_401(client: httpx.AsyncClient) -> None:
    assert (await client.get("/auth/me")).status_code == 401
    assert (await client.get("/auth/me", headers={"Authorization": "Bearer garbage"})).status_code == 401
    forged = jwt.encode(
        {"sub": "1", "exp": datetime.now(UTC) + timedelta(hours=1)}, "another-secret-of-at-least-32-bytes!!", algorithm="HS256"
    )
    assert (await client.get("/auth/me", headers={"Authorization": f"Bearer {forged}"})).status_code == 401


async def test_expired_token_is_401(client: httpx.AsyncClient, container) -> None:  # type: ignore[no-untyped-def]
    _, user_id = await register(client, "dave")
    token = container.tokens.issue(user_id, datetime.now(UTC) - timedelta(days=3))
    assert (await client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})).status_code == 401
