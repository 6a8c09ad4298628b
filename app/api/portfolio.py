"""Balances and performance: realised P&L, win rate, drawdown and the equity curve."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import ContainerDep, CurrentUser, Uow
from app.api.errors import answers
from app.api.http_guards import CheckedJsonRoute
from app.api.schemas import (
    BalancePublic,
    DrawdownPoint,
    EquityCurve,
    EquityPoint,
    EquityPointPublic,
    PairPerformance,
    PairsPerformance,
    Performance,
    PeriodProfitPublic,
    PortfolioPublic,
    ProfitPage,
)
from app.domain.trade_stats import Period, equity_points, pairs_summary, profit_by_period
from app.domain.values import ZERO

router = APIRouter(prefix="/portfolio", tags=["portfolio"], route_class=CheckedJsonRoute, responses=answers(401))


@router.get("", response_model=PortfolioPublic, responses=answers(502, 503))
async def portfolio(
    user: CurrentUser,
    container: ContainerDep,
    uow: Uow,
    refresh: Annotated[bool, Query(description="live accounts: ask the exchange now instead of reusing its answer "
                                               "of the last LIVE_BALANCE_CACHE_SECONDS")] = False,
) -> PortfolioPublic:
    """Balances as the books hold them (paper) or as the exchange last told (live), valued at current prices."""
    balances = [b for b in await container.balances(uow, user, refresh) if b.total > 0]
    prices = await container.current_prices(user, {b.asset + "USDT" for b in balances if b.asset != "USDT"})
    total = sum(
        (b.total if b.asset == "USDT" else b.total * prices.get(b.asset + "USDT", ZERO) for b in balances), ZERO
    )
    return PortfolioPublic(
        balances=[BalancePublic(asset=b.asset, free=b.free, locked=b.locked) for b in balances],
        total_value_usdt=total,
        mode=user.mode.value,
    )


@router.get("/performance", response_model=Performance)
async def performance(user: CurrentUser, uow: Uow) -> Performance:
    stats = await uow.portfolios.get(user.id)
    points = equity_points(stats.start_balance, await uow.trades.closed(user.id))
    return Performance(
        total_trades=stats.total_trades, winning_trades=stats.winning_trades, losing_trades=stats.losing_trades,
        win_rate=stats.win_rate, total_realized_pnl=stats.total_realized_pnl, total_fees=stats.total_fees,
        max_drawdown_pct=max((p.drawdown_pct for p in points), default=ZERO),
        equity_curve=[EquityPoint(time=p.time, equity=p.equity) for p in points],
    )


@router.get("/profit", response_model=ProfitPage, responses=answers(422))
async def profit(
    user: CurrentUser,
    container: ContainerDep,
    uow: Uow,
    period: Annotated[Period, Query(description="day, week (from Monday) or month, in UTC")] = Period.DAY,
    limit: Annotated[int, Query(ge=1, le=366, description="periods, back from the current one")] = 30,
) -> ProfitPage:
    """Closed trades' P&L per period by exit time, newest first; periods without trades are included."""
    stats = await uow.portfolios.get(user.id)
    buckets = profit_by_period(stats.start_balance, await uow.trades.closed(user.id), period,
                               container.market_clock.now(), limit)
    return ProfitPage(period=period.value, items=[
        PeriodProfitPublic(start=b.start, trades=b.trades, wins=b.wins, losses=b.losses, profit=b.profit,
                           profit_pct=b.profit_pct) for b in buckets
    ])


@router.get("/equity", response_model=EquityCurve, responses=answers(422, 502, 503))
async def equity(
    user: CurrentUser,
    container: ContainerDep,
    uow: Uow,
    limit: Annotated[int, Query(ge=1, le=5000, description="the newest points returned")] = 500,
) -> EquityCurve:
    """Cumulative realised P&L per closed trade, then now with the open positions at current prices, and the
    drawdown from the running peak of equity."""
    stats = await uow.portfolios.get(user.id)
    closed = await uow.trades.closed(user.id)
    positions = await uow.positions.for_user(user.id)
    prices = await container.current_prices(user, {p.symbol for p in positions})
    open_value = sum((p.amount * prices.get(p.symbol, p.entry_price) for p in positions), ZERO)
    unrealised = open_value - sum((p.amount * p.entry_price for p in positions), ZERO)
    points = equity_points(stats.start_balance, closed, container.market_clock.now(), unrealised)
    shown = points[-limit:]
    return EquityCurve(
        start_balance=stats.start_balance, open_value=open_value, unrealized_pnl=unrealised,
        points=[EquityPointPublic(time=p.time, realised=p.realised, equity=p.equity) for p in shown],
        max_drawdown_pct=max((p.drawdown_pct for p in points), default=ZERO),
        drawdown=[DrawdownPoint(time=p.time, pct=p.drawdown_pct) for p in shown], total_points=len(points),
    )


@router.get("/pairs", response_model=PairsPerformance)
async def pairs(user: CurrentUser, uow: Uow) -> PairsPerformance:
    """Per pair: trades, win rate, P&L, average duration; and exit reasons, profit factor and expectancy of all
    the user's closed trades."""
    summary = pairs_summary(await uow.trades.closed(user.id))
    return PairsPerformance(
        pairs=[PairPerformance(symbol=p.symbol, trades=p.trades, wins=p.wins, win_rate=p.win_rate, profit=p.profit,
                               avg_duration_s=p.avg_duration_s) for p in summary.pairs],
        trades=summary.trades, exit_reasons=summary.exit_reasons, profit_factor=summary.profit_factor,
        expectancy=summary.expectancy,
    )
