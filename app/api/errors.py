"""Error answers: what each status means in the OpenAPI document, 422s that never echo secrets or large inputs,
and the exchange's failures as 502/503 instead of 500."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.domain.errors import ConfigurationError, ExchangeError, RateLimited, TemporaryExchangeError


def invalid(where: str, field: str, message: str, value: object = None) -> RequestValidationError:
    """A 422 naming one field of the request's `where` ("body", "query" or "path"), raised by a route's own check."""
    return RequestValidationError([{"type": "value_error", "loc": (where, field), "input": value, "msg": message}])


def as_utc(where: str, field: str, value: datetime) -> datetime:
    """A time as UTC (one without an offset is taken as UTC); a time that leaves the calendar is a 422."""
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError as e:
        raise invalid(where, field, f"{field} is outside the calendar once in UTC", str(value)) from e


class ErrorAnswer(BaseModel):
    detail: str


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class ValidationAnswer(BaseModel):
    detail: list[FieldError]


DESCRIPTIONS = {
    401: "missing, malformed, expired or foreign bearer token",
    404: "no such item among the caller's own",
    409: "the action is not allowed in the item's state, or the name is taken",
    413: "request body larger than MAX_BODY_BYTES",
    422: "invalid input; each error names its field",
    429: "too many failed logins: wait Retry-After seconds",
    502: "the exchange refused the request (e.g. the account's API keys)",
    503: "temporarily unavailable (the exchange, or password checks or database connections are saturated): "
         "retry later",
}


def answers(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses a route can give."""
    return {
        code: {"model": ValidationAnswer if code == 422 else ErrorAnswer, "description": DESCRIPTIONS[code]}
        for code in codes
    }


SENSITIVE_FIELDS = frozenset({"password", "api_key", "api_secret", "token", "access_token"})
MAX_ECHO_CHARS = 64


class UnrepresentableNumber:
    """A JSON number Python cannot hold exactly or finitely (NaN, Infinity, 1e309, a 5,000-digit integer): kept as
    a marker so that validation fails on the field it was sent for, naming it."""

    def __init__(self, text: str) -> None:
        self.text = text if len(text) <= 24 else f"{text[:20]}..."

    def __repr__(self) -> str:
        return self.text


def _echo(value: Any) -> Any:
    """The input worth repeating in a 422: short scalars only (never a whole body, a list, or a huge string)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < 10**18 else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value if len(value) <= MAX_ECHO_CHARS else None
    return None


def _field(loc: Sequence[Any]) -> str:
    return next((str(part) for part in reversed(loc) if isinstance(part, str)), "")


# pydantic puts these before a validator's own message; the reader needs only the message
PYDANTIC_PREFIXES = ("Value error, ", "Assertion failed, ")


def readable_message(msg: str) -> str:
    """A validator's message as written for the user: without pydantic's "Value error, " prefix."""
    for prefix in PYDANTIC_PREFIXES:
        if msg.startswith(prefix):
            return msg[len(prefix):]
    return msg


def public_error(error: dict[str, Any]) -> dict[str, Any]:
    loc = [part if isinstance(part, int) else str(part) for part in error.get("loc", ())]
    answer: dict[str, Any] = {"type": error.get("type", "value_error"), "loc": loc,
                              "msg": readable_message(str(error.get("msg", "")))}
    value = error.get("input")
    if isinstance(value, UnrepresentableNumber):
        answer["type"], answer["msg"] = "finite_number", f"must be a finite number that fits its field, got {value!r}"
    elif _field(loc) not in SENSITIVE_FIELDS and (echo := _echo(value)) is not None:
        answer["input"] = echo
    if ctx := {key: _context_value(v) for key, v in (error.get("ctx") or {}).items()}:
        answer["ctx"] = ctx
    return answer


def _context_value(value: Any) -> Any:
    """A limit or pattern the error names (`le`: 2, `pattern`: ...): JSON-safe and short."""
    echoed = _echo(value)
    return echoed if echoed is not None else str(value)[:MAX_ECHO_CHARS]


async def validation_failed(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": [public_error(e) for e in exc.errors()]},
                        status_code=422)


async def exchange_unavailable(_: Request, exc: Exception) -> JSONResponse:
    headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))} if isinstance(exc, RateLimited) else None
    return JSONResponse({"detail": f"the exchange is unavailable, retry later: {exc}"},
                        status_code=status.HTTP_503_SERVICE_UNAVAILABLE, headers=headers)


async def exchange_refused(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": f"the exchange refused the request: {exc}"}, status_code=status.HTTP_502_BAD_GATEWAY)


async def database_busy(_: Request, exc: Exception) -> JSONResponse:
    """Every connection of the pool stayed busy for DB_POOL_TIMEOUT_SECONDS: an overload to retry, not a fault."""
    return JSONResponse({"detail": "the database is busy, retry in a moment"},
                        status_code=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "1"})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_failed)
    app.add_exception_handler(TemporaryExchangeError, exchange_unavailable)
    app.add_exception_handler(ExchangeError, exchange_refused)
    app.add_exception_handler(ConfigurationError, exchange_refused)
    app.add_exception_handler(PoolTimeout, database_busy)
