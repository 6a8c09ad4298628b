"""Request and response bodies: money as exact decimal strings, times as ISO-8601 UTC."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, EmailStr, Field, PlainSerializer, ValidationInfo, field_validator

from app.domain.analysts import AnalystKind
from app.domain.values import format_decimal
from app.user_config import (  # the trading config's schema (ConfigUpdate) lives there, shared with backtests
    ConfigUpdate,
    MoneyIn,
    Strict,
)


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


class PeriodProfitPublic(BaseModel):
    start: UTC = Field(description="the period's first instant (UTC; weeks start on Monday)")
    trades: int
    wins: int
    losses: int
    profit: Money = Field(description="net P&L of the trades closed in the period, USDT")
    profit_pct: Money = Field(description="profit as a percentage of the equity (start balance plus realised P&L) "
                                          "at the period's start")


class ProfitPage(BaseModel):
    period: Literal["day", "week", "month"]
    items: list[PeriodProfitPublic] = Field(description="newest first, periods without trades included")


class EquityPointPublic(BaseModel):
    time: UTC
    realised: Money = Field(description="cumulative realised P&L up to this point")
    equity: Money


class DrawdownPoint(BaseModel):
    time: UTC
    pct: Money = Field(description="below the running peak of equity, percent")


class EquityCurve(BaseModel):
    start_balance: Money
    points: list[EquityPointPublic] = Field(description="one per closed trade, oldest first (the newest `limit`); "
                                                        "the last is now, with the open positions marked to market")
    open_value: Money = Field(description="market value of the open positions at current prices")
    unrealized_pnl: Money = Field(description="open_value less the open positions' entry cost: what the last "
                                              "point adds to the realised equity")
    max_drawdown_pct: Money = Field(description="over the whole curve, not only the points returned")
    drawdown: list[DrawdownPoint]
    total_points: int


class PairPerformance(BaseModel):
    symbol: str
    trades: int
    wins: int
    win_rate: Money
    profit: Money
    avg_duration_s: int


class PairsPerformance(BaseModel):
    pairs: list[PairPerformance] = Field(description="most profitable first")
    trades: int
    exit_reasons: dict[str, int]
    profit_factor: Money | None = Field(description="gross profit / gross loss; null while no trade lost")
    expectancy: Money = Field(description="average net P&L per closed trade, USDT")


class OcoLegPublic(BaseModel):
    client_order_id: str
    kind: Literal["take_profit", "stop_loss"]
    price: Money | None = Field(description="the target (take profit) or the stop's trigger (stop loss)")
    status: str | None = Field(description="the leg's exchange state when its fill was recorded as an exit, else "
                                           "null: the list's status says the rest")


class OrderPublic(BaseModel):
    client_order_id: str
    purpose: str = Field(description="entry, protect (an OCO list), exit, or adopted")
    type: str
    side: str
    quantity: Money
    price: Money | None
    stop_price: Money | None
    status: str = Field(description="as last recorded from the exchange (PENDING_SEND or UNKNOWN before it answered)")
    exchange_order_id: str | None
    executed_qty: Money
    cumulative_quote_qty: Money
    average_price: Money | None = Field(description="cumulative_quote_qty / executed_qty, once something filled")
    commission: Money
    commission_asset: str | None
    error: str | None
    created_at: UTC | None
    transact_time: UTC | None
    legs: list[OcoLegPublic] = Field(default_factory=list, description="an OCO list's two legs")


class TradeDecisionPublic(BaseModel):
    analysis_id: int
    created_at: UTC
    analyzer: str
    signal: str
    confidence: int
    reasoning: str
    regime: str
    confluence_score: Money
    entry_price: Money | None
    stop_loss: Money | None
    take_profit: Money | None
    decision: str | None
    reasons: list[str]


class TradeFees(BaseModel):
    entry_fee: Money
    exit_fee: Money | None
    total: Money


class TradeDetail(BaseModel):
    trade: TradePublic
    orders: list[OrderPublic] = Field(description="in the order they were written")
    fees: TradeFees = Field(description="as the books hold them, in USDT")
    decision: TradeDecisionPublic | None = Field(description="the analysis that opened the trade and the user's "
                                                            "decision on it; null when it is no longer kept")
    duration_seconds: int = Field(description="entry to exit, or to now while the trade is open")


class EventPublic(BaseModel):
    id: int
    type: str
    time: UTC
    data: dict[str, object] = Field(description="as the WebSocket sent it (money as decimal strings)")


class EventPage(BaseModel):
    items: list[EventPublic] = Field(description="newest first")
    next_before_id: int | None = Field(description="pass as before_id for the next (older) page; null on the last")


class BacktestCreate(Strict):
    symbols: Annotated[list[Annotated[str, Field(min_length=1, max_length=20)]], Field(min_length=1, max_length=20)]
    start: datetime = Field(description="first decision: a UTC date (2025-10-01) or date-time")
    end: datetime = Field(description="last decision, after start; at most BACKTEST_MAX_DAYS later")
    config: ConfigUpdate = Field(default_factory=ConfigUpdate,
                                 description="trading-config fields as PUT /trading/config takes them (not symbols)")
    balance: Annotated[MoneyIn, Field(gt=0, le=10**12)] = Decimal("10000")

    @field_validator("start", "end", mode="before")
    @classmethod
    def _a_date_text(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str):
            raise ValueError(f"{info.field_name} must be a date (YYYY-MM-DD) or an ISO date-time")
        return value

    @field_validator("config")
    @classmethod
    def _pairs_apart(cls, value: ConfigUpdate) -> ConfigUpdate:
        if value.symbols is not None:
            raise ValueError("name the pairs in symbols, not in config")
        return value


class BacktestPublic(BaseModel):
    id: int
    status: Literal["queued", "running", "done", "failed"]
    progress: float = Field(ge=0, le=1, description="0-1, from the run's progress bar")
    symbols: list[str]
    start: UTC
    end: UTC
    span_days: Money
    balance: Money
    config: dict[str, object]
    created_at: UTC
    started_at: UTC | None
    finished_at: UTC | None
    summary: dict[str, str | int | None] | None = Field(
        description="report.json's headline figures once done (numbers as decimal strings, counts as integers)")
    error: str | None = Field(description="why it failed, in the run's words")
    files: list[str] = Field(description="what GET /backtests/{id}/files/{name} serves: report.html and the charts")


class BacktestDetail(BacktestPublic):
    report: dict[str, object] | None = Field(description="report.json as the backtester wrote it, once done")


class BacktestPage(BaseModel):
    items: list[BacktestPublic] = Field(description="newest first")
