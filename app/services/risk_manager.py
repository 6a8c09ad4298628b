"""The seed's path for `app.risk.manager` (see docs/architecture.md): a thin public entry module that re-exports it."""

from app.risk.manager import (
    EXIT_ATR_TIMEFRAME,
    HUNDRED,
    PREFERRED_RISK_REWARD,
    RR_QUANTUM,
    RiskManager,
    Zone,
)

__all__ = [
    "EXIT_ATR_TIMEFRAME",
    "HUNDRED",
    "PREFERRED_RISK_REWARD",
    "RR_QUANTUM",
    "RiskManager",
    "Zone",
]
