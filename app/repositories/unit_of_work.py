"""One unit of work: every repository on one session, committed together or not at all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.repositories.backtests import BacktestRepository
from app.repositories.log import AnalysisRepository, EventRepository
from app.repositories.orders import OrderRepository
from app.repositories.sim_accounts import SimAccountRepository
from app.repositories.trading import (
    ConfigRepository,
    DustRepository,
    PortfolioRepository,
    PositionRepository,
    TradeRepository,
)
from app.repositories.users import CredentialRepository, ThrottleRepository, UserRepository


class UnitOfWork:
    """All repositories on one session; nothing is written unless `commit` is called."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.users = UserRepository(session)
        self.configs = ConfigRepository(session)
        self.trades = TradeRepository(session)
        self.orders = OrderRepository(session)
        self.positions = PositionRepository(session)
        self.portfolios = PortfolioRepository(session)
        self.dust = DustRepository(session)
        self.analyses = AnalysisRepository(session)
        self.events = EventRepository(session)
        self.credentials = CredentialRepository(session)
        self.throttle = ThrottleRepository(session)
        self.sim_accounts = SimAccountRepository(session)
        self.backtests = BacktestRepository(session)

    async def commit(self) -> None:
        await self.session.commit()

    async def rollback(self) -> None:
        await self.session.rollback()


class UnitOfWorkFactory:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[UnitOfWork]:
        # leaving the session closes it, and closing rolls back whatever was not committed (also on errors)
        async with self.sessions() as session:
            yield UnitOfWork(session)
