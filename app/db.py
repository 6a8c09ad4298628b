"""The database: async engine, sessions, SQLite WAL mode and Alembic migrations applied on start."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _enable_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


@dataclass(frozen=True)
class PoolSettings:
    """Connections per process: `size` kept open, `overflow` more under a burst, `timeout_s` to wait for one."""

    size: int = 5
    overflow: int = 5
    timeout_s: float = 5.0

    def engine_options(self) -> dict[str, Any]:
        return {"pool_size": self.size, "max_overflow": self.overflow, "pool_timeout": self.timeout_s}


def create_engine(url: str, pool: PoolSettings | None = None) -> AsyncEngine:
    parsed = make_url(url)
    options = (pool or PoolSettings()).engine_options()
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if not database or database == ":memory:":  # one connection shared by everything: no pool to size
            options = {}
        else:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, **options)
        event.listen(engine.sync_engine, "connect", _enable_sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=True, **options)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Apply the migrations (blocking; env.py runs them on an async engine)."""
    command.upgrade(alembic_config(url), revision)


class Database:
    """Owns the engine and hands out sessions."""

    def __init__(self, url: str, pool: PoolSettings | None = None) -> None:
        self.url = url
        self.engine = create_engine(url, pool)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, class_=AsyncSession)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    async def migrate(self) -> None:
        await asyncio.to_thread(upgrade, self.url)

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def dispose(self) -> None:
        await self.engine.dispose()
