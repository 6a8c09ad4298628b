"""The risk rules' numbers (DESIGN.md section 5) and a user's trading config, as plain values."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from decimal import Decimal

from app.domain.analysts import AnalystKind
from app.domain.values import SymbolRules, TradingMode


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Service-wide rule numbers; per-user values in TradingConfig override the ones it names."""

    min_signal_confidence: int = 60
    confidence_floor: int = 50
    confidence_ceiling: int = 95
    win_rate_lookback_trades: int = 20
    win_rate_min_trades: int = 10
    low_win_rate_pct: Decimal = Decimal("40")
    high_win_rate_pct: Decimal = Decimal("60")
    low_win_rate_raise: int = 5
    high_win_rate_lower: int = 10
    randomize_thresholds: bool = True
    threshold_jitter_pct: Decimal = Decimal("8")
    random_seed: int = 42
    risk_per_trade_pct: Decimal = Decimal("1")
    max_balance_trade_ratio: Decimal = Decimal("0.01")
    min_trade_value: Decimal = Decimal("5")
    min_account_balance: Decimal = Decimal("10")
    min_risk_reward: Decimal = Decimal("1.5")
    max_risk_reward: Decimal = Decimal("3")
    min_stop_distance_pct: Decimal = Decimal("0.8")
    max_stop_distance_pct: Decimal = Decimal("2.5")
    min_target_distance_pct: Decimal = Decimal("1.5")
    max_target_distance_pct: Decimal = Decimal("5")
    daily_trade_limit: int = 5
    daily_pacing: bool = True  # the day's entries spread over it (RiskRules.check_daily_pace)
    max_open_positions: int = 3
    position_timeout_minutes: int = 480
    sr_touch_threshold_pct: Decimal = Decimal("0.5")
    max_entry_deviation_pct: Decimal = Decimal("1")
    stop_limit_gap_pct: Decimal = Decimal("0.2")


@dataclass(frozen=True, slots=True)
class TradingConfig:
    """One user's trading settings."""

    user_id: int
    is_active: bool = False
    symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")  # may hold one `top:N` rule
    exclude_symbols: tuple[str, ...] = ()  # never picked by the `top:N` rule (stablecoins and leveraged tokens never are)
    risk_per_trade_pct: Decimal = Decimal("1")
    max_open_positions: int = 3
    daily_trade_limit: int = 5
    min_signal_confidence: int = 60
    max_balance_trade_ratio: Decimal = Decimal("0.01")
    trading_hours_start: time | None = None
    trading_hours_end: time | None = None
    position_timeout_minutes: int = 480
    analyzer: str = AnalystKind.RULES.value
    mode: TradingMode = TradingMode.PAPER
    extra: dict[str, str] = field(default_factory=dict)

    def in_trading_hours(self, now: time) -> bool:
        start, end = self.trading_hours_start, self.trading_hours_end
        if start is None or end is None:
            return True
        if start <= end:
            return start <= now < end
        return now >= start or now < end  # a window across midnight


@dataclass(frozen=True, slots=True)
class UserRiskContext:
    """What the risk rules need to know about one user at one cycle; the bot counts it from the database."""

    user_id: int
    config: TradingConfig
    usdt_balance: Decimal
    open_symbols: tuple[str, ...]
    entries_today: int
    recent_results: tuple[bool, ...]  # closed trades, newest first, True = win
    rules: SymbolRules
    cycle_time: datetime
