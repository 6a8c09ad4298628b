"""What a simulator endpoint reads: the request's context and its parameters, checked as Binance checks them."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from app.devtools.api_errors import BinanceApiError
from app.domain.values import Side
from app.venues.binance.protocol import DEFAULT_RECV_WINDOW_MS, MAX_KLINES, MAX_RECV_WINDOW_MS
from app.venues.paper.exchange import MockBinanceService

DEFAULT_LIMIT = 500  # klines and myTrades without `limit`
_DECIMAL_TEXT = re.compile(r"[0-9]{1,20}(\.[0-9]{1,20})?")
_MAX_DECIMALS = 8


@dataclass
class RequestContext:
    """One request as its endpoint sees it: method, path, parameters, the time, and the account of a signed one."""

    method: str
    path: str
    params: dict[str, str]
    now_ms: int
    service: MockBinanceService | None = None
    fill_ratio: Decimal | None = None

    @property
    def account(self) -> MockBinanceService:
        assert self.service is not None, "signed endpoint without an account"
        return self.service


Handler = Callable[[RequestContext], Awaitable[Any]]


def required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if not value:
        raise BinanceApiError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
    return value


def int_param(params: Mapping[str, str], name: str, default: Any = ...) -> Any:
    if name not in params and default is not ...:
        return default
    text = required(params, name)
    if not re.fullmatch(r"-?[0-9]{1,20}", text):
        raise BinanceApiError(-1100, f"Illegal characters found in parameter '{name}'.")
    return int(text)


def limit_param(params: Mapping[str, str]) -> int:
    """`limit`, clamped to 1..MAX_KLINES as Binance does."""
    return max(1, min(MAX_KLINES, int_param(params, "limit", DEFAULT_LIMIT)))


def decimal_param(params: Mapping[str, str], name: str) -> Decimal:
    text = required(params, name)
    if not _DECIMAL_TEXT.fullmatch(text):
        raise BinanceApiError(-1100, f"Illegal characters found in parameter '{name}'; "
                                     "legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.")
    value = Decimal(text)
    if -value.normalize().as_tuple().exponent > _MAX_DECIMALS:  # type: ignore[operator]
        raise BinanceApiError(-1111)
    return value


def side_param(params: Mapping[str, str]) -> Side:
    try:
        return Side(required(params, "side"))
    except ValueError as e:
        raise BinanceApiError(-1102, "Parameter 'side' must be BUY or SELL.") from e


def flag_param(params: Mapping[str, str], name: str) -> bool:
    return params.get(name, "false").lower() == "true"


def recv_window_ms(params: Mapping[str, str]) -> int:
    text = params.get("recvWindow")
    if text is None:
        return DEFAULT_RECV_WINDOW_MS
    if not _DECIMAL_TEXT.fullmatch(text) or Decimal(text) > MAX_RECV_WINDOW_MS:
        raise BinanceApiError(-1102, f"recvWindow must be less than {MAX_RECV_WINDOW_MS}.")
    return int(Decimal(text))
