"""Migration 0003: it names accounts whose usernames or emails differ only in case, and enforces the rule after."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from app.db import upgrade

INSERT = ("INSERT INTO users (username, email, password_hash, mode, created_at) "
          "VALUES (:u, :e, 'h', 'paper', '2026-01-01 00:00:00')")


async def _insert(url: str, *users: tuple[str, str]) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            for username, email in users:
                await connection.execute(text(INSERT), {"u": username, "e": email})
    finally:
        await engine.dispose()


def test_clashing_accounts_stop_the_upgrade_and_are_named(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/clash.db"
    upgrade(url, "0002")
    asyncio.run(_insert(url, ("alice", "a@example.com"), ("Alice", "b@example.com"), ("bob", "B@example.com")))
    with pytest.raises(RuntimeError) as stopped:
        upgrade(url)
    message = str(stopped.value)
    assert "'alice'" in message and "id 1 'alice'" in message and "id 2 'Alice'" in message
    assert "email 'b@example.com'" in message and "id 3 'B@example.com'" in message


def test_after_the_upgrade_the_database_refuses_a_case_variant(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/ok.db"
    upgrade(url, "0002")
    asyncio.run(_insert(url, ("alice", "a@example.com")))
    upgrade(url)
    with pytest.raises(IntegrityError):
        asyncio.run(_insert(url, ("ALICE", "other@example.com")))
    with pytest.raises(IntegrityError):
        asyncio.run(_insert(url, ("other", "A@EXAMPLE.com")))
