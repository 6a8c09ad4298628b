"""Immutable trading values: candles, orders, fills, signals, risk decisions and symbol rules."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Context, Decimal
from enum import StrEnum

ZERO = Decimal("0")


class Timeframe(StrEnum):
    M5 = "5m"
    M15 = "15m"
    H1 = "1h"

    @property
    def ms(self) -> int:
        return _TIMEFRAME_MS[self]


_TIMEFRAME_MS = {Timeframe.M5: 300_000, Timeframe.M15: 900_000, Timeframe.H1: 3_600_000}


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    LIMIT_MAKER = "LIMIT_MAKER"
    STOP_LOSS = "STOP_LOSS"
    STOP_LOSS_LIMIT = "STOP_LOSS_LIMIT"
    TAKE_PROFIT = "TAKE_PROFIT"
    TAKE_PROFIT_LIMIT = "TAKE_PROFIT_LIMIT"
    OCO = "OCO"  # not an order: an order list, as the books record one


class OrderStatus(StrEnum):
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"

    @property
    def is_final(self) -> bool:
        return self in _FINAL_STATUSES


_FINAL_STATUSES = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
)


class ListStatus(StrEnum):
    """Binance's `listOrderStatus`."""

    EXECUTING = "EXECUTING"
    ALL_DONE = "ALL_DONE"
    REJECT = "REJECT"


class SignalType(StrEnum):
    BUY = "buy"
    SELL = "sell"
    HOLD = "hold"


class TradeStatus(StrEnum):
    PENDING = "pending"
    FILLED = "filled"
    CLOSED = "closed"


class ExitReason(StrEnum):
    TAKE_PROFIT = "TAKE_PROFIT"
    STOP_LOSS = "STOP_LOSS"
    MANUAL = "MANUAL"
    TIMEOUT = "TIMEOUT"
    EMERGENCY = "EMERGENCY"


class TradingMode(StrEnum):
    PAPER = "paper"
    TESTNET = "testnet"
    LIVE = "live"


class TradingState(StrEnum):
    """Kill switch: ACTIVE trades, REDUCING only exits, HALTED does nothing but protect."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class Decision(StrEnum):
    """What happened to an analysis for one user."""

    EXECUTED = "executed"
    REJECTED = "rejected"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Candle:
    open_time_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass(frozen=True, slots=True)
class Balance:
    asset: str
    free: Decimal
    locked: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


@dataclass(frozen=True, slots=True)
class Fill:
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    trade_id: int = 0


@dataclass(frozen=True, slots=True)
class Order:
    """One exchange order as the exchange reports it."""

    symbol: str
    order_id: int
    client_order_id: str
    side: Side
    type: OrderType
    status: OrderStatus
    orig_qty: Decimal
    executed_qty: Decimal = ZERO
    cumulative_quote_qty: Decimal = ZERO
    price: Decimal = ZERO
    stop_price: Decimal | None = None
    fills: tuple[Fill, ...] = ()
    transact_time: datetime | None = None
    order_list_id: int = -1

    @property
    def avg_price(self) -> Decimal:
        if self.executed_qty == 0:
            return ZERO
        return self.cumulative_quote_qty / self.executed_qty

    def commission_in(self, asset: str) -> Decimal:
        return sum((f.commission for f in self.fills if f.commission_asset == asset), ZERO)


@dataclass(frozen=True, slots=True)
class OcoOrder:
    """An OCO order list: a take-profit leg and a stop-loss leg on one quantity."""

    symbol: str
    order_list_id: int
    list_client_order_id: str
    list_status: ListStatus
    legs: tuple[Order, ...]
    transaction_time: datetime | None = None

    @property
    def take_profit_leg(self) -> Order:
        take_profit_types = (OrderType.LIMIT_MAKER, OrderType.TAKE_PROFIT_LIMIT, OrderType.TAKE_PROFIT)
        return next(o for o in self.legs if o.type in take_profit_types)

    @property
    def stop_loss_leg(self) -> Order:
        return next(o for o in self.legs if o.type in (OrderType.STOP_LOSS_LIMIT, OrderType.STOP_LOSS))

    @property
    def filled_leg(self) -> Order | None:
        """The leg that executed completely, if any (Binance can end the list while a stop still rests)."""
        return next((o for o in self.legs if o.status == OrderStatus.FILLED), None)

    @property
    def is_open(self) -> bool:
        return self.list_status == ListStatus.EXECUTING


def oco_leg_client_ids(list_client_order_id: str) -> tuple[str, str]:
    """(take-profit leg id, stop-loss leg id) of a protective OCO: `<list>-tp`, `<list>-sl`. Part of the exchange
    port: every venue names the legs this way, so a list the venue forgot can still be judged by its legs."""
    return f"{list_client_order_id}-tp", f"{list_client_order_id}-sl"


class RulesSource(StrEnum):
    """Where a symbol's rules came from: said wherever rules are shown, since inferred ones are only a guess."""

    EXCHANGE = "exchange"  # the venue's exchangeInfo, read now
    FILE = "exchange_info.json"  # Binance's exchangeInfo stored beside the candles
    INFERRED = "inferred from candles"  # no stored rules: tick from the prices seen, conservative step and notional


TRADING_STATUS = "TRADING"


@dataclass(frozen=True, slots=True)
class PercentPrice:
    """PERCENT_PRICE_BY_SIDE (or PERCENT_PRICE, the same multipliers on both sides): a limit price must lie within
    these multiples of the recent average price, on its side of the book."""

    bid_up: Decimal
    bid_down: Decimal
    ask_up: Decimal
    ask_down: Decimal
    avg_price_mins: int = 5

    def bounds(self, side: Side, reference: Decimal) -> tuple[Decimal, Decimal]:
        down, up = (self.bid_down, self.bid_up) if side is Side.BUY else (self.ask_down, self.ask_up)
        return reference * down, reference * up


@dataclass(frozen=True, slots=True)
class SymbolRules:
    """The exchange's filters for one symbol, applied with Decimal arithmetic, and whether it trades now."""

    symbol: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_notional: Decimal
    min_price: Decimal = ZERO
    max_price: Decimal = ZERO
    status: str = TRADING_STATUS  # TRADING, END_OF_DAY, HALT, BREAK, CANCEL_ONLY
    spot_allowed: bool = True  # isSpotTradingAllowed / a SPOT permission
    percent_price: PercentPrice | None = None
    source: RulesSource = field(default=RulesSource.EXCHANGE, compare=False)

    def entry_problem(self) -> str | None:
        """Why no new entry may be opened on this symbol now (its open positions are still watched and closed)."""
        if self.status != TRADING_STATUS:
            return f"{self.symbol} is {self.status} on the exchange, not TRADING"
        if not self.spot_allowed:
            return f"{self.symbol} is not open to spot trading"
        return None

    def round_qty(self, qty: Decimal) -> Decimal:
        """Round down to the step, so we never try to sell more than we hold."""
        return (qty / self.step_size).to_integral_value(ROUND_DOWN) * self.step_size

    def round_price_down(self, price: Decimal) -> Decimal:
        return (price / self.tick_size).to_integral_value(ROUND_FLOOR) * self.tick_size

    def round_price_up(self, price: Decimal) -> Decimal:
        return (price / self.tick_size).to_integral_value(ROUND_CEILING) * self.tick_size

    def price_problem(self, price: Decimal) -> str | None:
        if price <= 0 or (self.min_price and price < self.min_price):
            return f"price {price} below PRICE_FILTER minPrice {self.min_price}"
        if self.max_price and price > self.max_price:
            return f"price {price} above PRICE_FILTER maxPrice {self.max_price}"
        if price % self.tick_size != 0:
            return f"price {price} not a multiple of tickSize {self.tick_size}"
        return None


def format_decimal(value: Decimal, quantum: Decimal | None = None) -> str:
    """Plain positional notation (never `1E-5`), optionally with exactly the quantum's decimals."""
    if quantum is not None:
        value = value.quantize(quantum.normalize())
    text = format(value, "f")
    if "." in text and quantum is None:
        text = text.rstrip("0").rstrip(".") or "0"
    return text


_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)  # normalize() without rounding any digit away
_ONE = Decimal(1)


def canonical(value: Decimal) -> Decimal:
    """What a Money column reads back: trailing zeros dropped, never exponent form (so SQLite, PostgreSQL and the
    backtest's in-memory books hold the same value). The same as Decimal(format_decimal(value)), at less than half
    its cost (every Money value read from the books passes here)."""
    if not value.is_finite():
        return Decimal(format_decimal(value))
    normal = value.normalize(_EXACT)
    if normal.adjusted() >= 0 and normal == normal.to_integral_value():  # 1E+2 is written 100
        return normal.quantize(_ONE, context=_EXACT)
    return normal


@dataclass(frozen=True, slots=True)
class Signal:
    """The analyst's proposal, in the seed's schema. Levels are proposals; the risk manager decides."""

    signal: SignalType
    confidence: int
    entry_price: Decimal | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    reasoning: str = ""

    @classmethod
    def hold(cls, reasoning: str) -> Signal:
        return cls(SignalType.HOLD, 0, reasoning=reasoning)


class Reason(str):
    """Why a rule said no: the text people read (it is the string), and the rule's `code`, which counts it (the
    backtest's rejection table, the decision log's tallies) without parsing the text."""

    code: str

    def __new__(cls, code: str, detail: str) -> Reason:
        reason = super().__new__(cls, detail)
        reason.code = code
        return reason

    def __getnewargs__(self) -> tuple[str, str]:  # type: ignore[override]  # pickled as (code, text)
        return self.code, str.__str__(self)


PROFILE_NOTE = "profile"  # a decision's note naming its asset profile: logged with the reasons, never counted as one

# skips whose code is one of these are tallied, not written per user: the decision log answers them from the user's
# decision spans (DecisionSpan) and the analysis row, with these very texts
HOLD = "hold"
OUTSIDE_HOURS = "outside trading hours"
ALREADY_HOLDING = "already holding"
SKIPS_FROM_SPANS = frozenset({HOLD, OUTSIDE_HOURS, ALREADY_HOLDING})


def hold_text(reasoning: str) -> str:
    return f"{HOLD}: {reasoning}" if reasoning else HOLD


def already_holding_text(symbol: str) -> str:
    return f"{ALREADY_HOLDING} {symbol}"


def hold_reason(signal: Signal) -> Reason:
    """How a hold is recorded (decision log, rejections): `hold`, with the analyst's reasoning when it gave one."""
    return Reason(HOLD, hold_text(signal.reasoning))


@dataclass(frozen=True, slots=True)
class SupportResistance:
    price: float
    kind: str  # "support" or "resistance"
    touches: int
    strength: float


@dataclass(frozen=True, slots=True)
class RegimeAnalysis:
    regime: str  # "trending_up", "trending_down", "ranging", "volatile"
    trading_allowed: bool
    reason: str
    adx: float
    atr_pct: float


@dataclass(frozen=True, slots=True)
class MarketFeatures:
    """Everything the analyst may see for one symbol at one cycle: no user data."""

    symbol: str
    time: datetime
    last_price: Decimal
    indicators: dict[str, dict[str, float]]  # timeframe -> name -> value
    regime: RegimeAnalysis
    levels: tuple[SupportResistance, ...]
    confluence: float
    recent: dict[str, Sequence[Candle]] = field(default_factory=dict)  # timeframe -> last few candles


@dataclass(frozen=True, slots=True)
class ExitPlan:
    """Adaptive stop and target, from S/R levels and ATR."""

    stop_loss: Decimal
    take_profit: Decimal
    risk_reward: Decimal
    reason: str


@dataclass(frozen=True, slots=True)
class RiskDecision:
    approved: bool
    reasons: tuple[Reason, ...] = ()
    quantity: Decimal = ZERO
    entry_price: Decimal = ZERO
    stop_loss: Decimal = ZERO
    take_profit: Decimal = ZERO
    confidence_threshold: float = 0.0
    risk_amount: Decimal = ZERO
    profile: str = ""  # the asset profile the exits were planned with (BTC, ETH, SOL, BNB or default)

    @property
    def position_value(self) -> Decimal:
        return self.quantity * self.entry_price

    @classmethod
    def reject(cls, *reasons: Reason, threshold: float = 0.0, profile: str = "") -> RiskDecision:
        return cls(False, tuple(reasons), confidence_threshold=threshold, profile=profile)

    def profile_note(self) -> list[Reason]:
        """The decision log's line naming the asset profile, when one was applied."""
        return [Reason(PROFILE_NOTE, f"asset profile: {self.profile}")] if self.profile else []


@dataclass(frozen=True, slots=True)
class AnalystReport:
    """One analyst call for the decision log: the signal plus what it cost to get it."""

    signal: Signal
    analyzer: str
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
