"""What the engine tells a user, as types: each event knows its wire name and serialises itself once, for the
WebSocket and the events table alike (money as exact decimal strings, as everywhere in the API)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event; `type` is the name clients see (API.md's message types)."""

    type: ClassVar[str] = ""

    def data(self) -> dict[str, Any]:
        """The event's fields for the wire: decimals as strings, optional fields left out while unset."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in self._optional():
                continue
            out[f.name] = str(value) if isinstance(value, Decimal) else value
        return out

    @classmethod
    def _optional(cls) -> frozenset[str]:
        return frozenset()


@dataclass(frozen=True, slots=True)
class SignalAnalysed(Event):
    type: ClassVar[str] = "analysis"
    symbol: str
    signal: str
    confidence: int
    regime: str
    confluence: float


@dataclass(frozen=True, slots=True)
class SignalRejected(Event):
    type: ClassVar[str] = "signal_rejected"
    symbol: str
    signal: str
    confidence: int
    reasons: list[str]


@dataclass(frozen=True, slots=True)
class TradeExecuted(Event):
    type: ClassVar[str] = "trade_executed"
    trade_id: int
    symbol: str
    amount: Decimal
    price: Decimal
    stop_loss: Decimal
    take_profit: Decimal
    oco_order_id: str


@dataclass(frozen=True, slots=True)
class PositionClosed(Event):
    type: ClassVar[str] = "position_closed"
    trade_id: int
    symbol: str
    exit_reason: str
    exit_price: Decimal
    profit_loss: Decimal


@dataclass(frozen=True, slots=True)
class EmergencyExit(Event):
    type: ClassVar[str] = "emergency_exit"
    trade_id: int
    symbol: str
    reason: str
    exit_price: Decimal | None  # None while the sale is not done


@dataclass(frozen=True, slots=True)
class OrderPathRepaired(Event):
    """Reconciliation finished something an earlier step left unfinished."""

    type: ClassVar[str] = "reconciled"
    trade_id: int
    symbol: str
    action: str
    detail: str


@dataclass(frozen=True, slots=True)
class EngineError(Event):
    """Something the user should know went wrong; it names the symbol or the trade it concerns."""

    type: ClassVar[str] = "error"
    message: str
    symbol: str | None = None
    trade_id: int | None = None

    @classmethod
    def _optional(cls) -> frozenset[str]:
        return frozenset({"symbol", "trade_id"})


@dataclass(frozen=True, slots=True)
class ExchangeKeysChanged(Event):
    """The user stored new exchange keys (or removed them: `paper`); every process drops the adapters built with
    the old ones when it reads this."""

    type: ClassVar[str] = "exchange_keys"
    mode: str


STATUS_EVENT = "status"  # the engine switch (POST /trading/start and /stop), published without a class of its own
EVENT_TYPES = frozenset({*(kind.type for kind in (
    SignalAnalysed, SignalRejected, TradeExecuted, PositionClosed, EmergencyExit, OrderPathRepaired, EngineError,
    ExchangeKeysChanged,
)), STATUS_EVENT})
