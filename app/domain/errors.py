"""The error tree, named after what the caller must do: stop, retry, skip, query or hold."""

from __future__ import annotations


class TradingError(Exception):
    """Root of every error the trading code raises on purpose."""


class ConfigurationError(TradingError):
    """Something is set up wrong (bad key, bad symbol, missing setting): stop and tell a human."""


class DataError(TradingError):
    """Market data is missing or malformed: the file and line are in the message."""


class ExchangeError(TradingError):
    """The exchange answered with an error that is neither temporary nor a plain rejection."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class TemporaryExchangeError(ExchangeError):
    """The exchange is unreachable or overloaded: retry later, the request had no effect."""


class RateLimited(TemporaryExchangeError):
    """429/418: wait `retry_after_s` before the next request."""

    def __init__(self, message: str, retry_after_s: float, code: int | None = None) -> None:
        super().__init__(message, code)
        self.retry_after_s = retry_after_s


class OrderRejected(ExchangeError):
    """The exchange refused the order: record it and skip; resending as is fails again."""


class InsufficientFunds(OrderRejected):
    """The account does not hold enough of the asset the order spends."""


class OrderNotFound(ExchangeError):
    """The exchange knows no order (or order list) with that id."""


class OrderStatusUnknown(ExchangeError):
    """The request may or may not have executed: query by client id, never resend blindly."""


class SignalError(TradingError):
    """The analyst gave nothing usable: the cycle holds."""


class RuleViolation(TradingError):
    """An action the rules forbid, such as closing a trade that is not open (HTTP 409)."""
