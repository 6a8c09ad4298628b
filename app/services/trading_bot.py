"""The seed's path for the trading engine, `app.engine` (see docs/architecture.md): a thin public entry module
that re-exports it."""

from app.engine.bot import (
    CANDLES,
    WARM_UP,
    AnalysesAhead,
    BotSettings,
    CycleSummary,
    EntryPlan,
    ExchangeProvider,
    FeatureBuilder,
    Publish,
    RiskChecker,
    SymbolAnalysis,
    TradingBot,
    UowFactory,
    analyze_with,
)
from app.engine.loop import TradingLoop

__all__ = [
    "CANDLES",
    "WARM_UP",
    "AnalysesAhead",
    "BotSettings",
    "CycleSummary",
    "EntryPlan",
    "ExchangeProvider",
    "FeatureBuilder",
    "Publish",
    "RiskChecker",
    "SymbolAnalysis",
    "TradingBot",
    "TradingLoop",
    "UowFactory",
    "analyze_with",

]
