"""Market data for the dashboard's chart: closed candles and the support/resistance levels the engine sees."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from app.api.deps import ContainerDep, CurrentUser
from app.api.errors import answers
from app.api.http_guards import CheckedJsonRoute
from app.api.schemas import UTC, Money
from app.domain.clock import utc_from_ms
from app.domain.values import Candle, Timeframe

router = APIRouter(prefix="/market", tags=["market"], route_class=CheckedJsonRoute,
                   responses=answers(401, 502, 503))

SymbolQuery = Annotated[str, Query(min_length=1, max_length=20)]


class CandlePublic(BaseModel):
    time: UTC
    open: Money
    high: Money
    low: Money
    close: Money
    volume: Money


class CandlePage(BaseModel):
    symbol: str
    timeframe: str
    items: list[CandlePublic]


class LevelPublic(BaseModel):
    price: Money
    kind: str
    touches: int
    strength: float


class LevelsAnswer(BaseModel):
    symbol: str
    time: UTC
    last_price: Money
    items: list[LevelPublic]


def _invalid(field: str, value: object, message: str) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": ("query", field), "input": value, "msg": message}])


def _known_symbol(container: ContainerDep, symbol: str) -> str:
    known = container.tradable_symbols()
    if symbol not in known:
        raise _invalid("symbol", symbol, f"unknown symbol {symbol}; known: {', '.join(known)}")
    return symbol


def _timeframe(value: str) -> Timeframe:
    try:
        return Timeframe(value)
    except ValueError as e:
        raise _invalid("timeframe", value, f"timeframe must be one of {', '.join(Timeframe)}") from e


def candle_public(candle: Candle) -> CandlePublic:
    return CandlePublic(
        time=utc_from_ms(candle.open_time_ms), open=candle.open, high=candle.high, low=candle.low,
        close=candle.close, volume=candle.volume,
    )


@router.get("/candles", response_model=CandlePage)
async def candles(
    _: CurrentUser,
    container: ContainerDep,
    symbol: SymbolQuery = "BTCUSDT",
    timeframe: Annotated[str, Query(max_length=4)] = "15m",
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> CandlePage:
    """Candles closed at the market clock's now, oldest first; `time` is each candle's open time."""
    tf = _timeframe(timeframe)
    found = await container.market_data.get_klines(_known_symbol(container, symbol), tf, limit)
    return CandlePage(symbol=symbol, timeframe=tf.value, items=[candle_public(c) for c in found])


@router.get("/levels", response_model=LevelsAnswer)
async def levels(_: CurrentUser, container: ContainerDep, symbol: SymbolQuery = "BTCUSDT") -> LevelsAnswer:
    """The support/resistance levels of the engine's own feature path (15m swings), nearest to the price first."""
    _known_symbol(container, symbol)
    now = container.market_clock.now()
    features = await container.bot.market_features(symbol, now)
    tick = (await container.market_data.get_symbol_rules(symbol)).tick_size
    return LevelsAnswer(
        symbol=symbol, time=now, last_price=features.last_price,
        items=[
            LevelPublic(price=_to_tick(level.price, tick), kind=level.kind, touches=level.touches,
                        strength=round(level.strength, 4))
            for level in features.levels
        ],
    )


def _to_tick(price: float, tick: Decimal) -> Decimal:
    """Float level from the indicator math back to an exact price on the symbol's tick."""
    return Decimal(repr(price)).quantize(tick.normalize())
