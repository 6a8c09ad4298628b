"""Figures of a user's closed trades: profit per calendar period, the equity curve with its drawdown, and per pair."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from itertools import accumulate

from app.domain.records import TradeRecord, win_rate_pct
from app.domain.values import ZERO

PCT = Decimal("0.01")


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"  # ISO weeks: Monday 00:00 UTC
    MONTH = "month"


def period_start(period: Period, at: datetime) -> datetime:
    """The UTC start of the day, week (Monday) or month that holds `at`."""
    at = at.astimezone(UTC)
    day = datetime(at.year, at.month, at.day, tzinfo=UTC)
    if period is Period.WEEK:
        return day - timedelta(days=day.weekday())
    if period is Period.MONTH:
        return day.replace(day=1)
    return day


def previous_start(period: Period, start: datetime) -> datetime:
    if period is Period.DAY:
        return start - timedelta(days=1)
    if period is Period.WEEK:
        return start - timedelta(weeks=1)
    return (start - timedelta(days=1)).replace(day=1)


def _closed_at(trade: TradeRecord) -> datetime:
    return trade.closed_at or trade.executed_at


@dataclass(slots=True)
class PeriodProfit:
    start: datetime
    trades: int = 0
    wins: int = 0
    losses: int = 0
    profit: Decimal = ZERO
    profit_pct: Decimal = ZERO  # of the equity (start balance plus realised P&L) at the period's start


def profit_by_period(start_balance: Decimal, closed: Sequence[TradeRecord], period: Period, now: datetime,
                     count: int) -> list[PeriodProfit]:
    """The `count` periods up to the one holding `now`, newest first, empty periods included (a bar chart's
    axis), each with the trades that closed in it."""
    starts = [period_start(period, now)]
    while len(starts) < count:
        starts.append(previous_start(period, starts[-1]))
    buckets = {s: PeriodProfit(s) for s in starts}
    ordered = sorted(closed, key=_closed_at)
    times = [_closed_at(t) for t in ordered]
    realised_before = list(accumulate((t.profit_loss or ZERO for t in ordered), initial=ZERO))
    for trade in ordered:
        bucket = buckets.get(period_start(period, _closed_at(trade)))
        if bucket is not None:
            profit = trade.profit_loss or ZERO
            bucket.trades += 1
            bucket.wins += profit > 0
            bucket.losses += profit <= 0
            bucket.profit += profit
    for s, bucket in buckets.items():
        equity = start_balance + realised_before[bisect_left(times, s)]
        bucket.profit_pct = (bucket.profit * 100 / equity).quantize(PCT) if equity > 0 else ZERO
    return [buckets[s] for s in starts]


@dataclass(frozen=True, slots=True)
class EquityPoint:
    time: datetime
    realised: Decimal  # cumulative realised P&L
    equity: Decimal
    drawdown_pct: Decimal  # below the running peak of equity


def equity_points(start_balance: Decimal, closed: Iterable[TradeRecord], now: datetime | None = None,
                  unrealised: Decimal | None = None) -> list[EquityPoint]:
    """One point per closed trade (oldest first), and with `unrealised` a last one at `now` with the open positions
    marked to market; drawdown from the running peak, which starts at the start balance."""
    realised, peak, points = ZERO, start_balance, []
    steps = [(_closed_at(t), t.profit_loss or ZERO, ZERO) for t in closed]
    if now is not None and unrealised is not None:
        steps.append((now, ZERO, unrealised))
    for when, profit, open_pnl in steps:
        realised += profit
        equity = start_balance + realised + open_pnl
        peak = max(peak, equity)
        drawdown = ((peak - equity) * 100 / peak).quantize(PCT) if peak > 0 else ZERO
        points.append(EquityPoint(when, realised, equity, drawdown))
    return points


@dataclass(slots=True)
class PairFigures:
    symbol: str
    trades: int = 0
    wins: int = 0
    profit: Decimal = ZERO
    duration_s: int = 0

    @property
    def win_rate(self) -> Decimal:
        return win_rate_pct(self.wins, self.trades)

    @property
    def avg_duration_s(self) -> int:
        return self.duration_s // self.trades if self.trades else 0


@dataclass(slots=True)
class PairsSummary:
    pairs: list[PairFigures] = field(default_factory=list)
    exit_reasons: dict[str, int] = field(default_factory=dict)
    gross_profit: Decimal = ZERO
    gross_loss: Decimal = ZERO  # a positive number
    trades: int = 0

    @property
    def profit_factor(self) -> Decimal | None:
        """Gross profit over gross loss; none while nothing was lost."""
        return (self.gross_profit / self.gross_loss).quantize(Decimal("0.001")) if self.gross_loss else None

    @property
    def expectancy(self) -> Decimal:
        """The average net P&L of a trade, in USDT."""
        total = self.gross_profit - self.gross_loss
        return (total / self.trades).quantize(Decimal("0.00000001")) if self.trades else ZERO


def pairs_summary(closed: Iterable[TradeRecord]) -> PairsSummary:
    """Per pair (most profitable first), exit reasons, profit factor and expectancy of closed trades."""
    summary, pairs = PairsSummary(), dict[str, PairFigures]()
    for trade in closed:
        profit = trade.profit_loss or ZERO
        pair = pairs.setdefault(trade.symbol, PairFigures(trade.symbol))
        pair.trades += 1
        pair.wins += profit > 0
        pair.profit += profit
        pair.duration_s += trade.duration_seconds or 0
        reason = trade.exit_reason.value if trade.exit_reason else "UNKNOWN"
        summary.exit_reasons[reason] = summary.exit_reasons.get(reason, 0) + 1
        summary.trades += 1
        if profit > 0:
            summary.gross_profit += profit
        else:
            summary.gross_loss -= profit
    summary.pairs = sorted(pairs.values(), key=lambda p: (-p.profit, p.symbol))
    return summary
