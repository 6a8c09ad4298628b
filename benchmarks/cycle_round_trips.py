"""Database transactions and commits per engine cycle (issue 16): a quiet cycle and a cycle with one entry, one user on
the paper exchange over the bundled candles, SQLite in a temporary directory.

    PYTHONPATH=. .venv/bin/python benchmarks/cycle_round_trips.py
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event

from app.config import Settings
from app.container import Container
from app.db import upgrade
from app.domain.clock import SimulatedClock

START = datetime(2025, 9, 8, tzinfo=UTC)


class Counting:
    """Counts what reaches the database: transactions begun (each unit of work that touches a table is one) and
    commits, through SQLAlchemy's engine events (the paper exchange's account store included)."""

    def __init__(self, engine: Any) -> None:
        self.sessions = self.commits = 0
        event.listen(engine.sync_engine, "begin", self._begin)
        event.listen(engine.sync_engine, "commit", self._commit)

    def _begin(self, _connection: Any) -> None:
        self.sessions += 1

    def _commit(self, _connection: Any) -> None:
        self.commits += 1


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'rt.db'}"
        await asyncio.to_thread(upgrade, url)
        settings = Settings(database_url=url, jwt_secret="x" * 40, default_symbols=("BTCUSDT", "SOLUSDT"))
        clock = SimulatedClock(START)
        container = Container(settings, market_clock=clock)
        async with container.uow() as uow:
            user = await uow.users.add("u", "u@example.com", "hash", clock.now())
            config = dataclasses.replace(container.default_config(user.id), is_active=True)
            await uow.configs.create(config, clock.now())
            await uow.portfolios.create(user.id, settings.paper_start_balance, clock.now())
            await container.open_paper_account(uow, user.id)
            await uow.commit()
        counting = Counting(container.db.engine)
        quiet: list[tuple[int, int]] = []
        entry: tuple[int, int] | None = None
        for _ in range(2000):
            clock.advance(timedelta(minutes=5))
            before = (counting.sessions, counting.commits)
            summary = await container.bot.run_cycle(clock.now())
            spent = (counting.sessions - before[0], counting.commits - before[1])
            if summary.entries == 1 and summary.exits == 0 and entry is None:
                entry = spent
            elif summary.entries == 0 and summary.exits == 0:
                quiet.append(spent)
            if entry is not None and len(quiet) >= 20:
                break
        assert entry is not None
        print(f"cycle with one entry: {entry[0]} transactions, {entry[1]} commits")
        print(f"quiet cycles (median of {len(quiet)}): {sorted(quiet)[len(quiet) // 2]} (transactions, commits)")
        await container.db.dispose()


if __name__ == "__main__":
    asyncio.run(main())
