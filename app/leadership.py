"""Exactly one engine among processes and machines: a leader lock taken through the database, failover included.

PostgreSQL: a session-level advisory lock held on a connection of its own; the lock lives exactly as long as that
session, so a leader that dies (or whose machine or network does) loses it and a standby takes it at its next try.
SQLite: a file lock beside the database file, released by the kernel when the process dies (one machine only, as
SQLite itself). An in-memory SQLite database belongs to one process: that process leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from pathlib import Path
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from app.background import cancel_and_wait
from app.domain.clock import Clock

log = logging.getLogger("trdbot.leadership")

# pg_try_advisory_lock(int, int): the first key names the application ("trdb"), the second the role it guards
LOCK_NAMESPACE = 0x74726462
ENGINE_LOCK = 1
CHECK_TIMEOUT_S = 5.0
# the server drops a leader's session this long after its machine or network went silent (idle + interval x count)
SERVER_KEEPALIVE = {"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5", "tcp_keepalives_count": "3"}


class LeaderLock(Protocol):
    """A lock that at most one holder has at a time, across processes."""

    async def acquire(self) -> bool:
        """Take it if it is free (never waits for it); True when this holder has it."""
        ...

    async def still_held(self) -> bool:
        """Whether this holder still has it (a lost session or connection means it may be someone else's now)."""
        ...

    async def release(self) -> None: ...


class PostgresLeaderLock:
    """A session-level advisory lock on a connection of its own, in autocommit (never idle in a transaction)."""

    def __init__(self, url: str, key: int = ENGINE_LOCK, application_name: str = "trdbot-leader") -> None:
        settings = {"application_name": application_name, **SERVER_KEEPALIVE}
        self._engine = create_async_engine(url, poolclass=NullPool, connect_args={"server_settings": settings})
        self._key = key
        self._connection: AsyncConnection | None = None

    async def acquire(self) -> bool:
        try:
            connection = await self._connect()
            taken = await connection.scalar(text("SELECT pg_try_advisory_lock(:ns, :key)"),
                                            {"ns": LOCK_NAMESPACE, "key": self._key})
        except Exception as e:  # the database cannot be asked now: not the leader, ask again later
            log.warning("the leader lock cannot be asked for now: %s", e)
            await self._drop()
            return False
        return bool(taken)

    async def still_held(self) -> bool:
        if self._connection is None:
            return False
        query = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
                     "AND classid = :ns AND objid = :key AND objsubid = 2 AND granted")
        try:
            held = await asyncio.wait_for(
                self._connection.scalar(query, {"ns": LOCK_NAMESPACE, "key": self._key}), CHECK_TIMEOUT_S)
        except Exception as e:
            log.error("the leader lock's session is gone: %s", e)
            await self._drop()
            return False
        return bool(held)

    async def release(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.execute(text("SELECT pg_advisory_unlock(:ns, :key)"),
                                               {"ns": LOCK_NAMESPACE, "key": self._key})
        await self._drop()
        await self._engine.dispose()

    async def _connect(self) -> AsyncConnection:
        if self._connection is None:
            connection = await self._engine.connect()
            self._connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
        return self._connection

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()


class FileLeaderLock:
    """flock(2) on a file beside the SQLite database: the kernel frees it when its holder's process ends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    async def acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # who leads, for a person looking
        self._fd = fd
        return True

    async def still_held(self) -> bool:
        return self._fd is not None

    async def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor of this open file frees its flock


class SoleLock:
    """An in-memory database has one process: it always leads."""

    async def acquire(self) -> bool:
        return True

    async def still_held(self) -> bool:
        return True

    async def release(self) -> None:
        return None


def leader_lock(database_url: str) -> LeaderLock:
    """The lock that elects the engine's leader among every process on this database."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return PostgresLeaderLock(database_url, application_name="trdbot-engine-leader")
    if not url.database or url.database == ":memory:":
        return SoleLock()
    return FileLeaderLock(Path(url.database + ".engine.lock"))


class Engine(Protocol):
    """What leadership switches on and off: the trading loop and whatever else only the leader may run."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...


class EngineLeadership:
    """Runs the engine only while this process holds the leader lock: a standby asks for the lock every `retry_s`
    seconds, a leader checks it as often and stops its engine the moment it is lost (another may have it then)."""

    def __init__(self, lock: LeaderLock, engine: Engine, clock: Clock, retry_s: float, name: str = "") -> None:
        self.lock, self.engine, self.clock, self.retry_s = lock, engine, clock, retry_s
        self.name = name or f"pid {os.getpid()}"
        self.is_leader = False
        self._task: asyncio.Task[None] | None = None
        self._announced_standby = False

    async def step(self) -> None:
        """One round: a standby tries to take the lock (and starts the engine), a leader makes sure it still has it
        (or stops the engine)."""
        if not self.is_leader:
            if await self.lock.acquire():
                self.is_leader = True
                log.info("%s leads: the engine runs here", self.name)
                self.engine.start()
            elif not self._announced_standby:
                self._announced_standby = True
                log.info("%s stands by: another process leads the engine", self.name)
        elif not await self.lock.still_held():
            self.is_leader = False
            self._announced_standby = False
            log.error("%s lost the leader lock: the engine stops here", self.name)
            await self.engine.stop()

    async def run(self) -> None:
        while True:
            try:
                await self.step()
            except Exception:  # leadership must outlive a bad round; the next one asks again
                log.exception("%s: leader election round failed", self.name)
            await self.clock.sleep(self.retry_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="engine-leadership")

    async def stop(self) -> None:
        """Stop the engine if it runs here, then give the lock up, so a standby takes over at its next try."""
        await cancel_and_wait(self._task)
        self._task = None
        if self.is_leader:
            await self.engine.stop()
            self.is_leader = False
        await self.lock.release()
