"""Case 2: password hashing runs off the event loop, so a login flood cannot slow the other requests."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from app.config import Settings
from app.container import Container
from app.main import create_app
from app.services.security import PasswordHasher


async def _timed_health(client: httpx.AsyncClient) -> float:
    started = time.perf_counter()
    assert (await client.get("/health")).status_code == 200
    return time.perf_counter() - started


async def test_health_stays_fast_while_logins_hash(clean_database: str, tmp_path: Path) -> None:
    settings = Settings(database_url=clean_database, jwt_secret=SecretStr("f" * 40), argon2_time_cost=2,
                        argon2_memory_cost=32768, log_dir=tmp_path, market_data_dir=None, _env_file=None)
    container = Container(settings)
    hash_started = time.perf_counter()
    container.hasher.hash("one hash, to know its cost")
    hash_s = time.perf_counter() - hash_started
    transport = httpx.ASGITransport(app=create_app(container))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        logins = [asyncio.create_task(client.post("/auth/login", json={"username": f"nobody{i}", "password": "x"}))
                  for i in range(8)]
        await asyncio.sleep(0)
        latencies = []
        while not all(task.done() for task in logins):
            latencies.append(await _timed_health(client))
            await asyncio.sleep(0.01)
        answers = await asyncio.gather(*logins)
    await container.db.dispose()
    assert [a.status_code for a in answers] == [401] * 8
    assert len(latencies) >= 5, "the logins finished before /health could be measured"
    # on the event loop every hash would hold /health for its whole duration
    assert statistics.median(latencies) < hash_s / 3, (hash_s, latencies)


async def test_a_full_hashing_queue_answers_503_at_once(client: httpx.AsyncClient, container: Container) -> None:
    container.hasher = container.logins.hasher = PasswordHasher(1, 8192, workers=1, max_pending=1)
    release = threading.Event()
    pending = asyncio.ensure_future(container.hasher._off_loop(lambda: release.wait(10)))  # the only slot
    await asyncio.sleep(0)
    answer = await client.post("/auth/login", json={"username": "alice", "password": "whatever"})
    release.set()
    await pending
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "1"


@pytest.mark.parametrize("workers", [1, 2])
async def test_hashes_run_in_the_pool_not_on_the_loop(workers: int) -> None:
    hasher = PasswordHasher(1, 8192, workers=workers)
    stored = await hasher.hash_async("correct horse")
    assert await hasher.verify_async("correct horse", stored)
    assert not await hasher.verify_async("wrong horse", stored)
    assert not await hasher.verify_async("correct horse", None)
