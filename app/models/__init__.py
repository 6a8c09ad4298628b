"""SQLAlchemy tables only: every table of DESIGN.md section 8."""

from app.models.analysis import Analysis, AnalysisDecision, DecisionSpan, DecisionTally, EngineCycle
from app.models.backtest import BacktestRow
from app.models.base import Base
from app.models.event import Event
from app.models.portfolio import DustBalance, Portfolio
from app.models.trade import OpenPosition, OrderRow, Trade, TradingConfigRow
from app.models.user import ExchangeCredential, LoginThrottle, SimAccount, User

__all__ = [
    "Analysis",
    "AnalysisDecision",
    "BacktestRow",
    "Base",
    "DecisionSpan",
    "DecisionTally",
    "DustBalance",
    "EngineCycle",
    "Event",
    "ExchangeCredential",
    "LoginThrottle",
    "OpenPosition",
    "OrderRow",
    "Portfolio",
    "SimAccount",
    "Trade",
    "TradingConfigRow",
    "User",
]
