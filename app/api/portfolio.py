"""Balances and performance: realised P&L, win rate, drawdown and the equity curve."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import ContainerDep, CurrentUser, Uow
from app.api.errors import answers
from app.api.http_guards import CheckedJsonRoute
from app.api.schemas import BalancePublic, EquityPoint, Performance, PortfolioPublic
from app.domain.records import TradeRecord
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


def equity_curve(start_balance: Decimal, closed: list[TradeRecord]) -> list[tuple[datetime, Decimal]]:
    equity, points = start_balance, []
    for trade in closed:
        equity += trade.profit_loss or ZERO
        points.append((trade.closed_at or trade.executed_at, equity))
    return points


def max_drawdown_pct(start_balance: Decimal, equities: list[Decimal]) -> Decimal:
    peak, worst = start_balance, ZERO
    for equity in equities:
        peak = max(peak, equity)
        if peak > 0:
            worst = max(worst, (peak - equity) * 100 / peak)
    return worst.quantize(Decimal("0.01"))


@router.get("/performance", response_model=Performance)
async def performance(user: CurrentUser, uow: Uow) -> Performance:
    stats = await uow.portfolios.get(user.id)
    closed = await uow.trades.closed(user.id)
    curve = equity_curve(stats.start_balance, closed)
    return Performance(
        total_trades=stats.total_trades, winning_trades=stats.winning_trades, losing_trades=stats.losing_trades,
        win_rate=stats.win_rate, total_realized_pnl=stats.total_realized_pnl, total_fees=stats.total_fees,
        max_drawdown_pct=max_drawdown_pct(stats.start_balance, [e for _, e in curve]),
        equity_curve=[EquityPoint(time=t, equity=e) for t, e in curve],
    )
