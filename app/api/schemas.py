"""Request and response bodies: money as exact decimal strings, times as ISO-8601 UTC."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, EmailStr, Field, PlainSerializer, ValidationInfo, field_validator

from app.domain.analysts import AnalystKind
from app.domain.values import format_decimal
from app.user_config import Strict  # the trading config's schema (ConfigUpdate) lives there, shared with backtests


def _money(value: Decimal) -> str:
    return format_decimal(value)


def _utc(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


Money = Annotated[Decimal, PlainSerializer(_money, return_type=str, when_used="json")]
UTC = Annotated[datetime, PlainSerializer(_utc, return_type=str, when_used="json")]
USERNAME = re.compile(r"[A-Za-z0-9_.-]{3,32}")  # the whole string (fullmatch): "demo\n" is not "demo"
MAX_ID = 2**31 - 1  # ids are INTEGER columns (4 bytes on PostgreSQL)


class UserCreate(Strict):
    username: str
    email: EmailStr
    password: Annotated[str, Field(min_length=8, max_length=128)]

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if not USERNAME.fullmatch(value):
            raise ValueError("username must be 3-32 characters of letters, digits, '_', '.' or '-'")
        return value


class UserPublic(BaseModel):
    id: int
    username: str
    email: str


class Me(UserPublic):
    created_at: UTC


class RegisterAnswer(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    user: UserPublic


class LoginRequest(Strict):
    username: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=128)]


class LoginAnswer(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class ActiveAnswer(BaseModel):
    is_active: bool


class TradingStatus(BaseModel):
    is_active: bool
    mode: str
    state: str
    open_positions: int
    trades_today: int
    daily_trade_limit: int
    last_analysis_at: UTC | None
    next_cycle_at: UTC | None
    analyzer: str
    analyst: dict[str, object]


Analyzer = AnalystKind  # the registry in app/domain/analysts.py


class ConfigPublic(BaseModel):
    symbols: list[str] = Field(description="pairs, and at most one top:N rule (the N most traded USDT pairs)")
    exclude_symbols: list[str] = Field(description="pairs a top:N rule never picks")
    risk_per_trade_pct: Money
    max_open_positions: int
    daily_trade_limit: int
    min_signal_confidence: int
    max_balance_trade_ratio: Money
    trading_hours_start: str | None
    trading_hours_end: str | None
    position_timeout_minutes: int
    analyzer: Analyzer


class TradePublic(BaseModel):
    id: int
    symbol: str
    side: str
    amount: Money
    price: Money
    status: str
    stop_loss: Money
    take_profit: Money
    ai_signal_confidence: int
    executed_at: UTC
    exit_price: Money | None = None
    exit_reason: str | None = None
    profit_loss: Money | None = None
    profit_loss_percentage: Money | None = None
    fees: Money
    duration_seconds: int | None = None
    closed_at: UTC | None = None


class TradePage(BaseModel):
    items: list[TradePublic]
    total: int


class PositionPublic(BaseModel):
    trade_id: int
    symbol: str
    amount: Money
    entry_price: Money
    stop_loss: Money
    take_profit: Money
    oco_order_id: str | None
    opened_at: UTC
    current_price: Money | None
    unrealized_pnl: Money | None
    closing_reason: str | None = Field(None, description="set while its exit is under way (the next cycle finishes it)")


class AnalysisPublic(BaseModel):
    id: int
    symbol: str
    created_at: UTC
    analyzer: str
    signal: str
    confidence: int
    entry_price: Money | None
    stop_loss: Money | None
    take_profit: Money | None
    reasoning: str
    regime: str
    confluence_score: Money
    model: str | None
    error: str | None
    fallback_used: bool
    decision: str | None
    reasons: list[str]


class AnalysisPage(BaseModel):
    items: list[AnalysisPublic]


class BalancePublic(BaseModel):
    asset: str
    free: Money
    locked: Money


class PortfolioPublic(BaseModel):
    balances: list[BalancePublic]
    total_value_usdt: Money
    mode: str


class EquityPoint(BaseModel):
    time: UTC
    equity: Money


class Performance(BaseModel):
    total_trades: int
    winning_trades: int
    losing_trades: int
    win_rate: Money
    total_realized_pnl: Money
    total_fees: Money
    max_drawdown_pct: Money
    equity_curve: list[EquityPoint]


class ExchangeKeysUpdate(Strict):
    api_key: Annotated[str, Field(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9]+$")]
    api_secret: Annotated[str, Field(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9]+$")]
    mode: Literal["testnet", "live"]
    confirm_live: Annotated[bool, Field(validate_default=True)] = False

    @field_validator("confirm_live")
    @classmethod
    def _live_needs_confirmation(cls, value: bool, info: ValidationInfo) -> bool:
        if info.data.get("mode") == "live" and not value:
            raise ValueError("live trading with real money needs confirm_live: true")
        return value


class ExchangeKeysPublic(BaseModel):
    api_key_masked: str
    mode: str


class Health(BaseModel):
    status: str
    database: str
    exchange: str
