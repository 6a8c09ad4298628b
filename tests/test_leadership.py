"""The engine's leader: one among the processes sharing a database, and another one as soon as it is gone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from app.config import Settings
from app.container import Container
from app.domain.clock import WallClock
from app.leadership import (
    ENGINE_LOCK,
    LOCK_NAMESPACE,
    EngineLeadership,
    FileLeaderLock,
    LeaderLock,
    PostgresLeaderLock,
    SoleLock,
    leader_lock,
)


class Switch:
    """A stand-in engine that only records whether it runs."""

    def __init__(self) -> None:
        self.running = False
        self.starts = 0

    def start(self) -> None:
        self.running, self.starts = True, self.starts + 1

    async def stop(self) -> None:
        self.running = False


def is_postgres(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


def candidate(url: str, name: str) -> EngineLeadership:
    return EngineLeadership(leader_lock(url), Switch(), WallClock(), retry_s=0.1, name=name)


def engine_of(leadership: EngineLeadership) -> Switch:
    assert isinstance(leadership.engine, Switch)
    return leadership.engine


@pytest.fixture
async def two(clean_database: str) -> AsyncIterator[tuple[EngineLeadership, EngineLeadership]]:
    a, b = candidate(clean_database, "a"), candidate(clean_database, "b")
    yield a, b
    await a.stop()
    await b.stop()


def test_the_lock_follows_the_database() -> None:
    assert isinstance(leader_lock("postgresql+asyncpg://u:p@db/trdbot"), PostgresLeaderLock)
    file_lock = leader_lock("sqlite+aiosqlite:////srv/trdbot/var/trdbot.db")
    assert isinstance(file_lock, FileLeaderLock) and str(file_lock.path) == "/srv/trdbot/var/trdbot.db.engine.lock"
    assert isinstance(leader_lock("sqlite+aiosqlite:///:memory:"), SoleLock)


async def test_only_one_of_two_candidates_runs_the_engine(two: tuple[EngineLeadership, EngineLeadership]) -> None:
    a, b = two
    for _ in range(3):
        await a.step()
        await b.step()
    assert (a.is_leader, b.is_leader) == (True, False)
    assert engine_of(a).running and engine_of(a).starts == 1
    assert not engine_of(b).running and engine_of(b).starts == 0


async def test_a_standby_takes_over_at_its_next_try_once_the_leader_stops(
    two: tuple[EngineLeadership, EngineLeadership]
) -> None:
    a, b = two
    await a.step()
    await b.step()
    await a.stop()  # shutdown: the engine stops first, then the lock is given up
    assert not engine_of(a).running
    await b.step()
    assert b.is_leader and engine_of(b).running


async def _holder_pids(url: str) -> list[int]:
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        pids = (await connection.execute(text(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = :ns AND objid = :key "
            "AND objsubid = 2 AND granted"), {"ns": LOCK_NAMESPACE, "key": ENGINE_LOCK})).scalars().all()
    await engine.dispose()
    return list(pids)


async def _terminate(url: str, pid: int) -> None:
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    await engine.dispose()


async def test_postgres_the_leaders_session_dies_and_the_standby_takes_over_at_its_next_try(
    two: tuple[EngineLeadership, EngineLeadership], clean_database: str
) -> None:
    """The leader's session ends without a word (its process or machine died, or the server dropped it): the
    standby leads at its next try, and the old leader, should it still run, stops its engine at its next check."""
    if not is_postgres(clean_database):
        pytest.skip("a PostgreSQL session; SQLite's file lock is freed only by its holder's process ending "
                    "(tests/test_serve_workers.py kills one)")
    a, b = two
    await a.step()
    await b.step()
    holders = await _holder_pids(clean_database)
    assert len(holders) == 1
    await _terminate(clean_database, holders[0])
    for _ in range(100):  # the server ends the session, and frees its locks, just after it answers
        if not await _holder_pids(clean_database):
            break
        await asyncio.sleep(0.05)
    await b.step()
    assert b.is_leader and engine_of(b).running
    await a.step()
    assert not a.is_leader and not engine_of(a).running
    await a.step()
    assert not a.is_leader, "the old leader stands by while the new one holds the lock"
    assert await _holder_pids(clean_database) != holders


async def test_a_lock_that_cannot_be_asked_for_means_standing_by(database_url: str) -> None:
    if not is_postgres(database_url):
        pytest.skip("a database server that does not answer")
    url = make_url(database_url).set(port=1)  # nothing listens there
    lock: LeaderLock = PostgresLeaderLock(url.render_as_string(hide_password=False))
    leadership = EngineLeadership(lock, Switch(), WallClock(), retry_s=0.1)
    await leadership.step()
    assert not leadership.is_leader and not engine_of(leadership).running
    await leadership.stop()


async def test_two_serving_containers_on_one_database_run_one_trading_loop(settings: Settings) -> None:
    """`serve` twice (or a restarted engine beside a live one): the second stands by instead of trading twice."""
    if settings.database_url.endswith(":memory:"):
        pytest.skip("an in-memory database belongs to one process")
    quiet = settings.model_copy(update={"trading_interval_seconds": 3600})
    first, second = Container(quiet, run_engine=True), Container(quiet, run_engine=True)
    await first.start()
    await second.start()
    try:
        assert first.leadership is not None and second.leadership is not None
        assert (first.leadership.is_leader, second.leadership.is_leader) == (True, False)
        assert first.loop is not None and first.loop._task is not None
        assert second.loop is not None and second.loop._task is None
        assert first.engine_here and not second.engine_here
        await first.stop()
        await second.leadership.step()
        assert second.leadership.is_leader and second.loop._task is not None and second.engine_here
    finally:
        await second.stop()
