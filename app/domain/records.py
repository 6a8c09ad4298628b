"""What the books hold: users, trades, positions, orders, analyses and events as plain values."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from decimal import Decimal
from enum import StrEnum
from typing import Any

from app.domain.values import (
    ZERO,
    Decision,
    ExitReason,
    ListStatus,
    OrderStatus,
    OrderType,
    Side,
    TradeStatus,
    TradingMode,
)


@dataclass(frozen=True, slots=True)
class UserAccount:
    id: int
    username: str
    email: str
    password_hash: str
    mode: TradingMode
    created_at: datetime


@dataclass(frozen=True, slots=True)
class TradeRecord:
    id: int
    user_id: int
    symbol: str
    side: str
    status: TradeStatus
    amount: Decimal
    price: Decimal
    stop_loss: Decimal
    take_profit: Decimal
    ai_signal_confidence: int
    entry_client_order_id: str
    entry_fee: Decimal
    executed_at: datetime
    fees: Decimal = ZERO
    exit_price: Decimal | None = None
    exit_reason: ExitReason | None = None
    exit_fee: Decimal | None = None
    profit_loss: Decimal | None = None
    profit_loss_percentage: Decimal | None = None
    duration_seconds: int | None = None
    closed_at: datetime | None = None
    analysis_id: int | None = None


@dataclass(frozen=True, slots=True)
class Remainder:
    """Base asset of one symbol the bot holds but no position sells yet: what rounding to the step left behind.
    `cost` is what the books charged for it: the trade that left it was credited with its value at its exit
    price, and the next exit of the symbol, which sells it, is charged that much."""

    amount: Decimal = ZERO
    cost: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class PositionRecord:
    trade_id: int
    user_id: int
    symbol: str
    amount: Decimal
    entry_price: Decimal
    stop_loss: Decimal
    take_profit: Decimal
    oco_order_id: str | None
    opened_at: datetime
    closing_reason: ExitReason | None = None  # set when its exit starts: reconciliation finishes it, never re-protects


class Purpose(StrEnum):
    """Why the bot sent an order (or, for ADOPTED, recorded one it found)."""

    ENTRY = "entry"
    PROTECT = "protect"
    EXIT = "exit"
    ADOPTED = "adopted"


class RowStatus(StrEnum):
    """An order row's state: ours until the exchange answered (PENDING_SEND: written, maybe sent; UNKNOWN: sent,
    outcome unknown), then the exchange's own, an order's or an order list's."""

    PENDING_SEND = "PENDING_SEND"
    UNKNOWN = "UNKNOWN"
    NOT_FOUND = "NOT_FOUND"  # the exchange denied knowing it: checked again before any exit of its trade
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    EXECUTING = "EXECUTING"
    ALL_DONE = "ALL_DONE"
    REJECT = "REJECT"

    @classmethod
    def of(cls, status: OrderStatus | ListStatus) -> RowStatus:
        return cls(status.value)

    @property
    def awaiting_exchange(self) -> bool:
        """Nothing the exchange said is recorded yet: ask it by client id."""
        return self in (RowStatus.PENDING_SEND, RowStatus.UNKNOWN)

    @property
    def is_final(self) -> bool:
        """The order (or list) can change no more."""
        return self in _FINAL_ROW_STATUSES


_FINAL_ROW_STATUSES = frozenset({RowStatus.FILLED, RowStatus.CANCELED, RowStatus.REJECTED, RowStatus.EXPIRED,
                                 RowStatus.ALL_DONE, RowStatus.REJECT})
# order row statuses that end an order: with nothing executed, such an entry bought nothing
NO_FILL_FINAL = (RowStatus.REJECTED, RowStatus.CANCELED, RowStatus.EXPIRED)


@dataclass(frozen=True, slots=True)
class OrderRecord:
    client_order_id: str
    user_id: int
    purpose: Purpose
    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal
    status: RowStatus
    trade_id: int | None = None
    price: Decimal | None = None
    stop_price: Decimal | None = None
    take_profit: Decimal | None = None
    confidence: int | None = None
    analysis_id: int | None = None
    exchange_order_id: str | None = None
    executed_qty: Decimal = ZERO
    cumulative_quote_qty: Decimal = ZERO
    commission: Decimal = ZERO
    commission_asset: str | None = None
    error: str | None = None
    created_at: datetime | None = None  # set by the books when the row is written (the bot's clock)
    transact_time: datetime | None = None  # the exchange's time of its last execution (the exchange's clock)

    @property
    def unbooked_entry(self) -> bool:
        """An entry without its trade that may have bought something (not final without a fill)."""
        never_filled = self.status in NO_FILL_FINAL and self.executed_qty == 0
        return self.purpose == Purpose.ENTRY and self.trade_id is None and not never_filled


@dataclass(slots=True)
class AnalysisRecord:
    """One row of the decision log. Not frozen, unlike the other records: the engine builds one per symbol and
    cycle, and a frozen dataclass of this many fields takes five times as long to build (3.8 against 0.7 us);
    nothing changes a record once built (repositories copy it with dataclasses.replace)."""

    symbol: str
    created_at: datetime
    analyzer: str
    signal: str
    confidence: int
    reasoning: str
    regime: str
    confluence_score: Decimal
    last_price: Decimal
    entry_price: Decimal | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    model: str | None = None
    prompt: str | None = None
    prompt_version: str | None = None
    prompt_hash: str | None = None
    raw_response: str | None = None
    latency_ms: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = ZERO
    fallback_used: bool = False
    error: str | None = None
    id: int | None = None
    decision: Decision | None = None
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One user's own row in the decision log: what an actionable signal (a buy or a sell) meant for that user
    (executed, rejected, or skipped: already holding, at the position cap, outside trading hours). A hold is the same
    for everyone: it is only tallied (DecisionTally), and a user sees it through their span (DecisionSpan)."""

    analysis_id: int
    user_id: int
    decision: Decision
    reasons: tuple[str, ...]
    created_at: datetime
    trade_id: int | None = None


@dataclass(frozen=True, slots=True)
class DecisionTally:
    """How often one outcome met an analysis in one cycle, over every user decided on it: a decision and one of its
    reasons' codes (each reason of a decision counts once, an entry's under ""). The cycle's summary per symbol."""

    analysis_id: int
    decision: Decision
    reason: str
    count: int


@dataclass(frozen=True, slots=True)
class DecisionSpan:
    """Consecutive cycles (first_at to last_at) in which a user was decided with the same analyst, symbols and
    trading hours: every analysis for those inside it that has no row of the user's is a skip the user saw (a hold,
    a symbol held, outside trading hours), answered from the analysis row. While it is open (last_at None) it ends
    with the user's last decision (their config's last_analyzed_at): going on costs no write."""

    user_id: int
    analyzer: str
    symbols: tuple[str, ...]
    hours_start: time | None
    hours_end: time | None
    first_at: datetime
    last_at: datetime | None = None
    id: int = 0

    def same_terms(self, other: DecisionSpan) -> bool:
        return (self.analyzer, self.symbols, self.hours_start, self.hours_end) == \
            (other.analyzer, other.symbols, other.hours_start, other.hours_end)


@dataclass(frozen=True, slots=True)
class EventRecord:
    user_id: int
    type: str
    time: datetime
    data: dict[str, Any] = field(default_factory=dict)
    id: int | None = None


@dataclass(frozen=True, slots=True)
class PortfolioStats:
    user_id: int
    start_balance: Decimal
    total_trades: int = 0
    winning_trades: int = 0
    losing_trades: int = 0
    total_realized_pnl: Decimal = ZERO
    total_fees: Decimal = ZERO

    @property
    def win_rate(self) -> Decimal:
        return win_rate_pct(self.winning_trades, self.total_trades)


@dataclass(frozen=True, slots=True)
class LoginLimits:
    """Per username: `user_max_failures` attempts in `user_window_s`, after which only addresses that have not
    failed may still try (so an attacker cannot lock the owner out). Per address: `address_free_attempts`, then a
    wait that starts at `address_backoff_s` and doubles with each further attempt up to `address_max_backoff_s`;
    an address is forgotten after `address_window_s` without attempts. A correct password is not counted."""

    user_max_failures: int = 5
    user_window_s: int = 300
    address_free_attempts: int = 10
    address_backoff_s: int = 1
    address_max_backoff_s: int = 900
    address_window_s: int = 3600
    prune_interval_s: int = 600


@dataclass(frozen=True, slots=True)
class AddressAttempt:
    """What one counted-or-refused attempt from an address left in its throttle row."""

    allowed: bool
    attempts: int
    blocked_until_ms: int


@dataclass(frozen=True, slots=True)
class UsernameAttempt:
    attempts: int
    window_start_ms: int


class BacktestStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class BacktestRun:
    """A backtest a user asked for through the API, run by `trdbot backtest` in a process of its own."""

    id: int
    user_id: int
    status: BacktestStatus
    symbols: tuple[str, ...]
    start: datetime
    end: datetime
    balance: Decimal
    config: dict[str, Any]  # trading-config fields (ConfigUpdate's), as JSON
    created_at: datetime
    progress: float = 0.0  # 0-1, from the run's progress bar
    started_at: datetime | None = None
    finished_at: datetime | None = None
    summary: dict[str, Any] | None = None  # headline figures of report.json, once done
    error: str | None = None  # why it failed, as the run said it


def win_rate_pct(wins: int, trades: int) -> Decimal:
    """Winning trades in % of all, to the hundredth (0 without a trade)."""
    return (Decimal(wins) * 100 / trades).quantize(Decimal("0.01")) if trades else ZERO
