"""Case 9: security headers, no-store on token answers, API docs without a CDN (or off), old throttle rows pruned,
private files, and the error answers in the OpenAPI document."""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.cli import main
from app.config import Settings
from app.container import Container
from app.domain.clock import SimulatedClock
from app.main import create_app
from app.models import LoginThrottle
from tests.security.conftest import ServeProcess, client_at

HEADERS = {
    "content-security-policy": "script-src 'self'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


@pytest.mark.parametrize("path", ["/", "/app.js", "/health", "/auth/me", "/openapi.json", "/docs", "/nowhere"])
async def test_every_answer_carries_the_security_headers(client: httpx.AsyncClient, path: str) -> None:
    answer = await client.get(path)
    for name, expected in HEADERS.items():
        assert expected in answer.headers.get(name, ""), (path, name, answer.headers)
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert "unsafe-inline" not in answer.headers["content-security-policy"]


async def test_token_answers_are_not_stored(client: httpx.AsyncClient) -> None:
    registered = await client.post("/auth/register", json={"username": "cachy", "email": "c@example.com",
                                                           "password": "longenough"})
    login = await client.post("/auth/login", json={"username": "cachy", "password": "longenough"})
    for answer in (registered, login):
        assert answer.headers["cache-control"] == "no-store"


async def test_the_api_docs_come_from_this_server(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower() and "https://" not in page.text and "<script>" not in page.text
    for asset in ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css", "/docs/init.js"):
        assert (await client.get(asset)).status_code == 200, asset


async def test_the_api_docs_can_be_switched_off(settings: Settings) -> None:
    container = Container(settings.model_copy(update={"api_docs": False}))
    transport = httpx.ASGITransport(app=create_app(container))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/docs")).status_code == 404
        assert (await client.get("/openapi.json")).status_code == 404
        assert (await client.get("/health")).status_code == 200
    await container.db.dispose()


async def _throttle_rows(container: Container) -> int:
    async with container.uow() as uow:
        return int(await uow.session.scalar(select(func.count()).select_from(LoginThrottle)) or 0)


async def test_old_throttle_rows_are_pruned(clocked_app: FastAPI, clock: SimulatedClock) -> None:
    container: Container = clocked_app.state.container
    async with client_at(clocked_app, "192.0.2.1") as first, client_at(clocked_app, "192.0.2.2") as second:
        for i in range(3):
            assert (await first.post("/auth/login", json={"username": f"gone{i}", "password": "x"})).status_code == 401
        assert await _throttle_rows(container) == 4  # three names and one address
        clock.advance(timedelta(hours=2))
        assert (await second.post("/auth/login", json={"username": "fresh", "password": "x"})).status_code == 401
    assert await _throttle_rows(container) == 2  # only the new attempt's name and address remain


def test_db_upgrade_creates_a_private_database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/private.db")
    assert main(["db", "upgrade"]) == 0
    assert stat.S_IMODE((tmp_path / "private.db").stat().st_mode) == 0o600


def test_serve_writes_its_database_and_logs_for_its_owner_only(served: ServeProcess) -> None:
    assert httpx.get(f"{served.url}/health").status_code == 200
    files = [p for p in served.workdir.rglob("*") if p.is_file() and p.name != "serve.log"]
    assert any(p.suffix == ".db" for p in files) and any(p.suffix == ".log" for p in files), files
    loose = {str(p.relative_to(served.workdir)): oct(stat.S_IMODE(p.stat().st_mode))
             for p in files if p.stat().st_mode & 0o077}
    assert loose == {}


async def test_the_openapi_document_lists_each_routes_error_answers(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    expected = {
        ("/auth/register", "post"): {"201", "409", "413", "422"},
        ("/auth/login", "post"): {"200", "401", "413", "422", "429", "503"},
        ("/auth/me", "get"): {"200", "401"},
        ("/trading/trades/{trade_id}", "get"): {"200", "401", "404", "422"},
        ("/trading/close/{trade_id}", "post"): {"200", "401", "404", "409", "422", "502", "503"},
        ("/trading/config", "put"): {"200", "401", "413", "422"},
        ("/portfolio", "get"): {"200", "401", "502", "503"},
        ("/account/exchange-keys", "get"): {"200", "401", "404"},
        ("/health", "get"): {"200", "503"},
    }
    for (path, method), codes in expected.items():
        documented = set(paths[path][method]["responses"])
        assert codes <= documented, (path, method, codes - documented)
