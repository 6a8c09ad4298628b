"""Translation of every Binance failure (error body, HTTP status, transport error) into our error tree, once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from app.domain.errors import (
    ConfigurationError,
    ExchangeError,
    InsufficientFunds,
    OrderNotFound,
    OrderRejected,
    OrderStatusUnknown,
    RateLimited,
    TemporaryExchangeError,
    TradingError,
)
from app.domain.values import format_decimal

DEFAULT_RETRY_AFTER_S = 60.0  # a 429 without Retry-After: wait for the next weight window
RATE_LIMIT_CODES = frozenset({-1003, -1015})
UNKNOWN_OUTCOME_CODES = frozenset({-1000, -1006, -1007})
NOT_FOUND_CODES = frozenset({-2011, -2013, -2026})
REJECT_CODES = frozenset({-1013, -1100, -1102, -1111, -1145, -1158, -1160, -1165, -1166, -1168,
                          -1196, -1197, -1198, -1199, -2010})
KEY_CODES = frozenset({-1022, -2014, -2015})
KEY_HINT = ("Binance rejected the API key/signature: check BINANCE_API_KEY and BINANCE_SECRET_KEY (or the user's "
            "stored exchange keys), the key's IP whitelist and that trading is enabled for it")
CONFIG_HINTS = {
    -1121: "Binance does not know this symbol: check the configured symbols",
    -1120: "Binance does not know this kline interval",
}
_SIGNATURE_PAIR = re.compile(r"signature=[0-9a-fA-F]+")


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What we were doing, for messages: symbol, side, quantity and price when they apply. Never credentials."""

    action: str
    symbol: str | None = None
    side: str | None = None
    quantity: Decimal | None = None
    price: str | None = None
    client_order_id: str | None = None
    new_order: bool = False  # a request that may create an order: its failures leave the outcome unknown

    def describe(self) -> str:
        parts = [self.action]
        parts += [p for p in (self.side, self.symbol) if p]
        if self.quantity is not None:
            parts.append(f"qty={format_decimal(self.quantity)}")
        if self.price:
            parts.append(f"price={self.price}")
        if self.client_order_id:
            parts.append(f"client id={self.client_order_id}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed exchange call: an HTTP answer (status set) or a transport error (status None)."""

    status: int | None
    code: int | None = None
    msg: str = ""
    retry_after_s: float | None = None
    sent: bool = True  # False when the connection was never made, so the request cannot have executed

    @property
    def is_rate_limit(self) -> bool:
        return self.status in (429, 418) or self.code in RATE_LIMIT_CODES

    @property
    def outcome_unknown(self) -> bool:
        transport = self.status is None and self.sent
        return transport or (self.status or 0) >= 500 or self.code in UNKNOWN_OUTCOME_CODES

    def describe(self) -> str:
        where = f"HTTP {self.status}" if self.status is not None else "no answer"
        code = f" code {self.code}" if self.code is not None else ""
        return f"{where}{code}: {self.msg}" if self.msg else f"{where}{code}"


def redact(text: str, secret: str) -> str:
    """Remove the secret and any request signature from text that may reach a message or a log."""
    if secret:
        text = text.replace(secret, "***")
    return _SIGNATURE_PAIR.sub("signature=***", text)


def _rejection(failure: Failure, text: str) -> OrderRejected:
    if failure.code == -2010 and "insufficient balance" in failure.msg.lower():
        return InsufficientFunds(text, failure.code)
    return OrderRejected(text, failure.code)


def to_exchange_error(failure: Failure, context: RequestContext) -> TradingError:
    """The one mapping from a Binance failure to the error that tells the caller what to do."""
    text = f"Binance: {context.describe()} failed: {failure.describe()}"
    if failure.code in KEY_CODES or failure.status == 401:
        return ConfigurationError(f"{KEY_HINT}. {text}")
    if failure.code in CONFIG_HINTS:
        return ConfigurationError(f"{CONFIG_HINTS[failure.code]}. {text}")
    if failure.is_rate_limit:
        return RateLimited(text, failure.retry_after_s or DEFAULT_RETRY_AFTER_S, failure.code)
    if failure.outcome_unknown:
        if context.new_order:
            return OrderStatusUnknown(f"{text}; the order may have executed: query it by client id", failure.code)
        return TemporaryExchangeError(text, failure.code)
    if failure.status is None or failure.code == -1021:
        return TemporaryExchangeError(text, failure.code)  # never reached the engine: safe to retry later
    if failure.code in NOT_FOUND_CODES:
        return OrderNotFound(text, failure.code)
    if failure.code in REJECT_CODES:
        return _rejection(failure, text)
    return ExchangeError(text, failure.code)
