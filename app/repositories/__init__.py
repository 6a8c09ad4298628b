"""Repositories: map table rows to domain values and back. One unit of work per request or cycle step."""

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
from app.repositories.unit_of_work import UnitOfWork, UnitOfWorkFactory
from app.repositories.users import AlreadyTaken, CredentialRepository, ThrottleRepository, UserRepository

__all__ = [
    "AlreadyTaken",
    "AnalysisRepository",
    "ConfigRepository",
    "CredentialRepository",
    "DustRepository",
    "EventRepository",
    "OrderRepository",
    "PortfolioRepository",
    "PositionRepository",
    "SimAccountRepository",
    "ThrottleRepository",
    "TradeRepository",
    "UnitOfWork",
    "UnitOfWorkFactory",
    "UserRepository",
]
