"""Market data for the dashboard's chart: closed candles and the support/resistance levels the engine sees."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from app.api.deps import ContainerDep, CurrentUser
from app.api.errors import answers, invalid
from app.api.http_guards import CheckedJsonRoute
from app.api.schemas import UTC, Money
from app.domain.clock import utc_from_ms
from app.domain.profiles import asset_profile
from app.domain.symbols import TOP_RULE, tradable_problem
from app.domain.values import Candle, SymbolRules, Timeframe
from app.marketdata.directory import Coverage

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


class RulesPublic(BaseModel):
    source: str = Field(description="exchange, exchange_info.json, or inferred from candles (a conservative guess)")
    status: str
    spot_allowed: bool
    tick_size: Money
    step_size: Money
    min_qty: Money
    max_qty: Money
    min_notional: Money


class CoveragePublic(BaseModel):
    timeframe: str
    first: UTC = Field(description="open time of the first candle")
    last: UTC = Field(description="open time of the last candle")
    rows: int
    gaps: int
    missing: int


class SymbolPublic(BaseModel):
    symbol: str
    base_asset: str
    quote_asset: str
    selectable: bool = Field(description="whether it may be put in a trading config (USDT pairs only)")
    note: str | None = Field(description="why it cannot be chosen, or why it takes no new entries now")
    profile: str = Field(description="the asset profile its exits are planned with (BTC, ETH, SOL, BNB or default)")
    volume_rank: int | None = Field(description="1 = most traded USDT pair over the last 24 h")
    rules: RulesPublic
    coverage: list[CoveragePublic]


class SymbolList(BaseModel):
    source: str = Field(description="exchange (live) or candles (paper trading on stored candles)")
    items: list[SymbolPublic]


async def _known_symbol(container: ContainerDep, symbol: str) -> str:
    problems = await container.symbol_problems([symbol]) if not TOP_RULE.match(symbol) else ["a symbol, not a rule"]
    if problems:
        raise invalid("query", "symbol", problems[0], symbol)
    return symbol


def _timeframe(value: str) -> Timeframe:
    try:
        return Timeframe(value)
    except ValueError as e:
        raise invalid("query", "timeframe", f"timeframe must be one of {', '.join(Timeframe)}", value) from e


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
    found = await container.market_data.get_klines(await _known_symbol(container, symbol), tf, limit)
    return CandlePage(symbol=symbol, timeframe=tf.value, items=[candle_public(c) for c in found])


@router.get("/symbols", response_model=SymbolList)
async def symbols(
    _: CurrentUser,
    container: ContainerDep,
    search: Annotated[str, Query(max_length=20, description="part of the symbol, any case")] = "",
) -> SymbolList:
    """What a trading config can name: on the live market (live, or paper with MARKET_SOURCE=live), the venue's USDT
    pairs that are trading; on the replay, every symbol with candles. Each with its rules (and where they came
    from), its asset profile, volume rank and candle coverage."""
    listed = await container.listed_symbols()
    ranking = {s: i for i, s in enumerate(await container.symbol_ranking(), start=1)}
    live = container.settings.uses_live_market
    wanted = search.strip().upper()
    items = [
        _symbol_public(rules, ranking.get(symbol), container.symbol_coverage(symbol))
        for symbol, rules in sorted(listed.items())
        if wanted in symbol and not (live and (tradable_problem(rules) or rules.entry_problem()))
    ]
    items.sort(key=lambda item: (item.volume_rank is None, item.volume_rank or 0, item.symbol))
    return SymbolList(source="exchange" if live else "candles", items=items)


def _symbol_public(rules: SymbolRules, rank: int | None, coverage: list[Coverage]) -> SymbolPublic:
    problem = tradable_problem(rules)
    return SymbolPublic(
        symbol=rules.symbol, base_asset=rules.base_asset, quote_asset=rules.quote_asset, selectable=problem is None,
        note=problem or rules.entry_problem(), profile=asset_profile(rules.symbol).asset, volume_rank=rank,
        rules=RulesPublic(source=rules.source.value, status=rules.status, spot_allowed=rules.spot_allowed,
                          tick_size=rules.tick_size, step_size=rules.step_size, min_qty=rules.min_qty,
                          max_qty=rules.max_qty, min_notional=rules.min_notional),
        coverage=[CoveragePublic(timeframe=c.timeframe.value, first=c.first, last=c.last, rows=c.rows, gaps=c.gaps,
                                 missing=c.missing) for c in coverage],
    )


@router.get("/levels", response_model=LevelsAnswer)
async def levels(_: CurrentUser, container: ContainerDep, symbol: SymbolQuery = "BTCUSDT") -> LevelsAnswer:
    """The support/resistance levels of the engine's own feature path (15m swings), nearest to the price first."""
    await _known_symbol(container, symbol)
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
