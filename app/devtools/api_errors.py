"""Error answers in Binance's shape, and the paper exchange's errors translated into them in one place."""

from __future__ import annotations

import logging
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from app.devtools.faults import FaultRule
from app.domain.errors import ConfigurationError, DataError, OrderNotFound, OrderRejected, TradingError
from app.venues.binance.protocol import ERROR_CODES

logger = logging.getLogger(__name__)
T = TypeVar("T")


class BinanceApiError(Exception):
    """An error answer in Binance's shape: `{"code": ..., "msg": ...}` with the code's HTTP status."""

    def __init__(self, code: int, msg: str | None = None, status: int | None = None,
                 headers: Mapping[str, str] | None = None, fault: FaultRule | None = None) -> None:
        spec = ERROR_CODES.get(code)
        self.fault = fault  # the injected fault that caused this answer, if any
        self.code = code
        self.msg = msg if msg is not None else (spec.message if spec else "Error.")
        self.status = status if status is not None else (spec.http_status if spec else 400)
        self.headers = dict(headers or {})
        super().__init__(f"{self.status} {code} {self.msg}")


def server_error(rule: FaultRule) -> BinanceApiError:
    """The 5xx answer an injected server error gives."""
    code = rule.code if rule.code is not None else (-1007 if rule.status == 503 else -1000)
    return BinanceApiError(code, rule.msg, rule.status, fault=rule)


async def exchange_call(call: Coroutine[Any, Any, T], not_found_code: int = -2013) -> T:
    """Run a MockBinanceService call; its errors become Binance error answers with Binance's own messages."""
    try:
        return await call
    except OrderNotFound as e:
        raise BinanceApiError(not_found_code) from e
    except OrderRejected as e:
        logger.info("simulator: rejected: %s", e)
        code = e.code if e.code is not None and e.code in ERROR_CODES else -2010
        raise BinanceApiError(code, str(e).split(" (", 1)[0]) from e
    except ConfigurationError as e:
        raise BinanceApiError(-1121) from e
    except (DataError, TradingError) as e:
        raise BinanceApiError(-1000, f"Simulator error: {e}") from e
