"""The engine's settings, names and logs: what every part of it reads."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

from app.domain.risk import TradingConfig, UserRiskContext
from app.domain.values import MarketFeatures, Reason, RiskDecision, Signal, Timeframe

log = logging.getLogger("trdbot.bot")
trades_log = logging.getLogger("trdbot.trades")
metrics_log = logging.getLogger("trdbot.metrics")

CANDLES = {Timeframe.M5: 288, Timeframe.M15: 100, Timeframe.H1: 168}
# The history a first decision needs: the longest window (168 x 1h candles).
WARM_UP = max(count * timedelta(milliseconds=tf.ms) for tf, count in CANDLES.items())


class RiskChecker(Protocol):
    """The risk rules as the engine asks them: the cheap checks first, the full validation for the rest."""

    def skip_reason(self, config: TradingConfig, symbol: str, signal: Signal, open_symbols: tuple[str, ...],
                    now: datetime) -> Reason | None: ...

    def validate_trade_signal(self, signal: Signal, features: MarketFeatures, context: UserRiskContext) -> RiskDecision: ...


@dataclass(frozen=True, slots=True)
class BotSettings:
    user_rate_limit_s: int = 300
    oco_place_retries: int = 3
    exit_attempts: int = 3  # market sells per exit and cycle (a partly filled sell is followed by one for the rest)
    max_order_wait_s: float = 120.0  # how long protection and exits wait out rate limits within one cycle
    quote_asset: str = "USDT"
    user_batch_size: int = 1000  # users decided together: their state read in a few queries, written in one


@dataclass(frozen=True, slots=True)
class EntryPlan:
    """What an entry was meant to be; stored on its order row so a restart can finish it."""

    entry_price: Decimal
    stop_loss: Decimal
    take_profit: Decimal
    confidence: int
    analysis_id: int | None
