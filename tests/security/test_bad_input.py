"""Case 5: every bad input is a 4xx naming the field, never a 500; an exchange that fails is a 502/503."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.config import Settings
from app.container import Container
from app.devtools.simulator_thread import SimulatorThread
from app.main import create_app
from tests.conftest import register

NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e309", "-1e400", "1" * 5000]


def _raw(template: str, number: str) -> bytes:
    return template.replace("NUMBER", number).encode()


@pytest.mark.parametrize("number", NON_FINITE)
@pytest.mark.parametrize(("path", "template", "field"), [
    ("/auth/login", '{"username": NUMBER, "password": "x"}', "username"),
    ("/auth/register", '{"username": "zed", "email": "z@example.com", "password": NUMBER}', "password"),
])
async def test_unrepresentable_numbers_before_login_are_a_422_naming_the_field(
    client: httpx.AsyncClient, number: str, path: str, template: str, field: str,
) -> None:
    answer = await client.post(path, content=_raw(template, number), headers={"content-type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert [e["loc"] for e in answer.json()["detail"]] == [["body", field]]


@pytest.mark.parametrize("number", NON_FINITE)
@pytest.mark.parametrize("field", ["risk_per_trade_pct", "max_open_positions", "max_balance_trade_ratio"])
async def test_unrepresentable_numbers_in_the_config_are_a_422_naming_the_field(
    client: httpx.AsyncClient, number: str, field: str,
) -> None:
    headers, _ = await register(client)
    answer = await client.put("/trading/config", content=_raw(f'{{"{field}": NUMBER}}', number),
                              headers=headers | {"content-type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert [e["loc"] for e in answer.json()["detail"]] == [["body", field]]


@pytest.mark.parametrize("field", ["symbols", "risk_per_trade_pct", "analyzer", "daily_trade_limit"])
async def test_null_for_a_setting_that_cannot_be_empty_is_a_422(client: httpx.AsyncClient, field: str) -> None:
    headers, _ = await register(client)
    answer = await client.put("/trading/config", json={field: None}, headers=headers)
    assert answer.status_code == 422, answer.text
    assert [e["loc"] for e in answer.json()["detail"]] == [["body", field]]
    assert (await client.put("/trading/config", json={"trading_hours_start": None}, headers=headers)).status_code == 200


@pytest.mark.parametrize("number", [2**31, 2**63, 2**64, 10**30])
async def test_ids_and_offsets_beyond_the_columns_are_a_422(client: httpx.AsyncClient, number: int) -> None:
    headers, _ = await register(client)
    for method, url, field in (("GET", f"/trading/trades/{number}", "trade_id"),
                               ("POST", f"/trading/close/{number}", "trade_id"),
                               ("GET", f"/trading/trades?offset={number}", "offset")):
        answer = await client.request(method, url, headers=headers)
        assert answer.status_code == 422, (url, answer.text)
        assert answer.json()["detail"][0]["loc"][-1] == field


async def test_concurrent_registrations_of_one_name_give_one_account_and_409s(client: httpx.AsyncClient) -> None:
    answers = await asyncio.gather(*(
        client.post("/auth/register", json={"username": "twin" if i % 2 else "TWIN", "email": f"t{i}@example.com",
                                            "password": "longenough"})
        for i in range(8)
    ))
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] + [409] * 7, [a.text for a in answers]


async def test_concurrent_registrations_of_one_email_give_one_account_and_409s(client: httpx.AsyncClient) -> None:
    answers = await asyncio.gather(*(
        client.post("/auth/register", json={"username": f"user{i}", "email": "same@example.com",
                                            "password": "longenough"})
        for i in range(8)
    ))
    assert sorted(a.status_code for a in answers) == [201] + [409] * 7


def _rejecting_exchange() -> Starlette:
    """A Binance stand-in that refuses every request's API key, as Binance does (-2015)."""

    async def refuse(_: Request) -> JSONResponse:
        return JSONResponse({"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}, 401)

    return Starlette(routes=[Route("/{path:path}", refuse, methods=["GET", "POST", "DELETE"])])


@pytest.fixture
def rejecting_exchange() -> AsyncIterator[str]:
    server = SimulatorThread(_rejecting_exchange()).start()
    yield server.base_url
    server.stop()


async def _live_portfolio(clean_database: str, tmp_path: Path, base_url: str) -> httpx.Response:
    settings = Settings(database_url=clean_database, jwt_secret=SecretStr("g" * 40), use_mock_binance=False,
                        binance_base_url=base_url, credentials_key=SecretStr(Fernet.generate_key().decode()),
                        argon2_time_cost=1, argon2_memory_cost=8192, log_dir=tmp_path, _env_file=None)
    container = Container(settings)
    transport = httpx.ASGITransport(app=create_app(container))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            headers, _ = await register(client)
            keys = {"api_key": "abcdefgh1234", "api_secret": "secret12345678", "mode": "testnet"}
            assert (await client.put("/account/exchange-keys", json=keys, headers=headers)).status_code == 200
            return await client.get("/portfolio", headers=headers)
    finally:
        await container.db.dispose()


async def test_portfolio_with_an_unreachable_exchange_is_503(clean_database: str, tmp_path: Path) -> None:
    from tests.security.conftest import free_port

    answer = await _live_portfolio(clean_database, tmp_path, f"http://127.0.0.1:{free_port()}")
    assert answer.status_code == 503, answer.text
    assert "exchange" in answer.json()["detail"]


async def test_portfolio_with_keys_the_exchange_rejects_is_502(clean_database: str, tmp_path: Path,
                                                               rejecting_exchange: str) -> None:
    answer = await _live_portfolio(clean_database, tmp_path, rejecting_exchange)
    assert answer.status_code == 502, answer.text
    assert "API key" in answer.json()["detail"] and "secret12345678" not in answer.text
