"""The seed's path for `app.features.regime` (see docs/architecture.md): a thin public entry module that re-exports it."""

from app.features.regime import (
    RANGING,
    TRENDING_DOWN,
    TRENDING_UP,
    VOLATILE,
    MarketRegimeAnalyzer,
)

__all__ = [
    "RANGING",
    "TRENDING_DOWN",
    "TRENDING_UP",
    "VOLATILE",
    "MarketRegimeAnalyzer",
]
