"""Shared fixtures: one migrated database per run (SQLite by default, PostgreSQL via TEST_DATABASE_URL)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.config import Settings
from app.container import Container
from app.db import upgrade
from app.main import create_app
from app.models import Base


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The PostgreSQL pass (TEST_DATABASE_URL set) runs only what touches the database: tests without the
    database fixture would repeat the SQLite pass exactly, and `one_engine` runs (long engine simulations whose
    SQL is the same the shorter engine tests already exercise on PostgreSQL) run on SQLite only."""
    if not os.environ.get("TEST_DATABASE_URL"):
        return
    keep, skip = [], []
    for item in items:
        uses_db = "database_url" in getattr(item, "fixturenames", ())
        (keep if uses_db and item.get_closest_marker("one_engine") is None else skip).append(item)
    if skip:
        config.hook.pytest_deselected(items=skip)
        items[:] = keep


async def _drop_everything(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.drop_all)
        await connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    await engine.dispose()


async def _delete_rows(url: str) -> None:
    """Every row gone and, as SQLite does after its rows are deleted, ids counting from 1 again (the threshold jitter
    is seeded by the user id, so the parity tests need the backtest's user 1 on either database)."""
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
            await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                await connection.execute(table.delete())
    await engine.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("TEST_DATABASE_URL") or f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db')}/test.db"
    asyncio.run(_drop_everything(url))
    upgrade(url)
    return url


@pytest.fixture
def clean_database(database_url: str) -> str:
    asyncio.run(_delete_rows(database_url))
    return database_url


@pytest.fixture
def settings(clean_database: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=clean_database,
        jwt_secret="test-secret-not-for-production-0123456789",
        credentials_key=Fernet.generate_key().decode(),
        argon2_time_cost=1,
        argon2_memory_cost=8192,
        log_dir=tmp_path / "logs",
        market_data_dir=None,
        _env_file=None,
    )


@pytest.fixture
async def container(settings: Settings) -> AsyncIterator[Container]:
    container = Container(settings)
    yield container
    await container.db.dispose()


@pytest.fixture
async def client(container: Container) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(container)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def register(client: httpx.AsyncClient, name: str = "alice") -> tuple[dict[str, str], int]:
    """Registers a user and returns (auth headers, user id)."""
    answer = await client.post(
        "/auth/register", json={"username": name, "email": f"{name}@example.com", "password": "correct horse"}
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    return {"Authorization": f"Bearer {body['access_token']}"}, body["user"]["id"]
