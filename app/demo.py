"""The embedded demo: a replayed market at high speed, a demo user who is already trading, printed credentials."""

from __future__ import annotations

import dataclasses
import secrets
from datetime import datetime
from pathlib import Path

from app.config import Settings
from app.container import Container
from app.domain.clock import ReplayClock, WallClock
from app.domain.symbols import Selection
from app.domain.values import Timeframe
from app.engine.bot import WARM_UP

DEMO_USER = "demo"


def demo_password(var_dir: Path) -> str:
    path = var_dir / "demo-password.txt"
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(9))
        path.chmod(0o600)
    return path.read_text().strip()


def replay_start(container: Container, resume_at: datetime | None) -> datetime:
    named = [s for s in Selection.of(container.settings.default_symbols).named if container.candles.has_symbol(s)]
    first = min(container.candles.span(s, Timeframe.M5)[0] for s in named or container.candles.symbols())
    start = first + WARM_UP
    return max(start, resume_at) if resume_at is not None else start


async def _latest_market_time(container: Container) -> datetime | None:
    async with container.uow() as uow:
        return await uow.analyses.latest_time()


async def ensure_demo_user(container: Container, password: str) -> None:
    async with container.uow() as uow:
        user = await uow.users.by_username(DEMO_USER)
        if user is None:
            now = container.clock.now()
            user = await uow.users.add(DEMO_USER, "demo@trdbot.local", container.hasher.hash(password), now)
            await uow.configs.create(dataclasses.replace(container.default_config(user.id), is_active=True), now)
            await uow.portfolios.create(user.id, container.settings.paper_start_balance, now)
            await container.open_paper_account(uow, user.id)
            await uow.commit()


class ReplayContainer(Container):
    """Paper trading on recorded candles: the market clock replays from where the last run stopped.

    With a password it also keeps a demo user who is already trading.
    """

    def __init__(self, settings: Settings, speed: float, url: str, password: str | None = None, *,
                 run_engine: bool = True, engine_apart: bool = False, migrate: bool = True) -> None:
        self._speed, self._url, self._password = speed, url, password
        super().__init__(settings, clock=WallClock(), run_engine=run_engine, engine_apart=engine_apart,
                         migrate=migrate)

    async def start(self, migrate: bool | None = None) -> None:
        if self.migrate if migrate is None else migrate:
            await self.db.migrate()
        start = replay_start(self, await _latest_market_time(self))
        self.rebind_market_clock(ReplayClock(start, self._speed))
        if self.run_engine:  # the one process that prints for a person (an engine, or the API and engine in one)
            print(f"\nTRD Bot: {self._url}  (market replay from {start:%Y-%m-%d %H:%M} UTC at {self._speed:g}x)")
        if self._password is not None:
            await ensure_demo_user(self, self._password)
            print(f"  log in as  username: {DEMO_USER}   password: {self._password}")
            print("  or register your own user; Ctrl+C stops.\n", flush=True)
        await super().start(migrate=False)


def build_demo_container(settings: Settings, speed: float, port: int, var_dir: Path = Path("./var")) -> Container:
    return ReplayContainer(settings, speed, f"http://127.0.0.1:{port}/", demo_password(var_dir))
