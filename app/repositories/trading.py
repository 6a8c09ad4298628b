"""The trading books: configs, trades, open positions, portfolio totals and dust."""

from __future__ import annotations

from datetime import datetime, time
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, Select, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.records import PortfolioStats, PositionRecord, Remainder, TradeRecord
from app.domain.risk import TradingConfig
from app.domain.values import ZERO, ExitReason, TradeStatus, TradingMode
from app.models import DustBalance, OpenPosition, Portfolio, Trade, TradingConfigRow, User


def _hhmm(value: str | None) -> time | None:
    return None if value is None else time.fromisoformat(value)


def _config(row: TradingConfigRow, mode: TradingMode) -> TradingConfig:
    return TradingConfig(
        user_id=row.user_id,
        is_active=row.is_active,
        symbols=tuple(s for s in row.symbols.split(",") if s),
        exclude_symbols=tuple(s for s in (row.exclude_symbols or "").split(",") if s),
        risk_per_trade_pct=row.risk_per_trade_pct,
        max_open_positions=row.max_open_positions,
        daily_trade_limit=row.daily_trade_limit,
        min_signal_confidence=row.min_signal_confidence,
        max_balance_trade_ratio=row.max_balance_trade_ratio,
        trading_hours_start=_hhmm(row.trading_hours_start),
        trading_hours_end=_hhmm(row.trading_hours_end),
        position_timeout_minutes=row.position_timeout_minutes,
        analyzer=row.analyzer,
        mode=mode,
    )


_TRADE_STATUSES = {status.value: status for status in TradeStatus}  # a dict look-up, not an enum call, per row
_EXIT_REASONS = {reason.value: reason for reason in ExitReason}


def _trade(row: Trade | Row[Any]) -> TradeRecord:
    return TradeRecord(
        id=row.id,
        user_id=row.user_id,
        symbol=row.symbol,
        side=row.side,
        status=_TRADE_STATUSES[row.status],
        amount=row.amount,
        price=row.price,
        stop_loss=row.stop_loss,
        take_profit=row.take_profit,
        ai_signal_confidence=row.ai_signal_confidence,
        entry_client_order_id=row.entry_client_order_id,
        entry_fee=row.entry_fee,
        executed_at=row.executed_at,
        fees=row.fees,
        exit_price=row.exit_price,
        exit_reason=_EXIT_REASONS[row.exit_reason] if row.exit_reason else None,
        exit_fee=row.exit_fee,
        profit_loss=row.profit_loss,
        profit_loss_percentage=row.profit_loss_percentage,
        duration_seconds=row.duration_seconds,
        closed_at=row.closed_at,
        analysis_id=row.analysis_id,
    )


def _position(row: OpenPosition) -> PositionRecord:
    return PositionRecord(
        row.trade_id, row.user_id, row.symbol, row.amount, row.entry_price, row.stop_loss, row.take_profit,
        row.oco_order_id, row.opened_at, ExitReason(row.closing_reason) if row.closing_reason else None,
    )


def _config_with_mode() -> Select[TradingConfigRow, str]:
    """A config row with its user's mode (the mode lives on the user)."""
    return select(TradingConfigRow, User.mode).join(User, User.id == TradingConfigRow.user_id)


class ConfigRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(self, config: TradingConfig, now: datetime) -> None:
        row = TradingConfigRow(user_id=config.user_id, updated_at=now)
        self._assign(row, config)
        self.session.add(row)
        await self.session.flush()

    async def _row(self, user_id: int) -> TradingConfigRow:
        row = await self.session.scalar(select(TradingConfigRow).where(TradingConfigRow.user_id == user_id))
        if row is None:
            raise LookupError(f"user {user_id} has no trading config")
        return row

    async def get(self, user_id: int) -> TradingConfig:
        found = (await self.session.execute(_config_with_mode().where(TradingConfigRow.user_id == user_id))).first()
        if found is None:
            raise LookupError(f"user {user_id} has no trading config")
        row, mode = found
        return _config(row, TradingMode(mode or "paper"))

    async def save(self, config: TradingConfig, now: datetime) -> None:
        row = await self._row(config.user_id)
        self._assign(row, config)
        row.updated_at = now

    @staticmethod
    def _assign(row: TradingConfigRow, config: TradingConfig) -> None:
        row.is_active = config.is_active
        row.symbols = ",".join(config.symbols)
        row.exclude_symbols = ",".join(config.exclude_symbols)
        row.risk_per_trade_pct = config.risk_per_trade_pct
        row.max_open_positions = config.max_open_positions
        row.daily_trade_limit = config.daily_trade_limit
        row.min_signal_confidence = config.min_signal_confidence
        row.max_balance_trade_ratio = config.max_balance_trade_ratio
        row.trading_hours_start = config.trading_hours_start.strftime("%H:%M") if config.trading_hours_start else None
        row.trading_hours_end = config.trading_hours_end.strftime("%H:%M") if config.trading_hours_end else None
        row.position_timeout_minutes = config.position_timeout_minutes
        row.analyzer = config.analyzer

    async def active(self) -> list[TradingConfig]:
        rows = (await self.session.execute(
            _config_with_mode().where(TradingConfigRow.is_active.is_(True)).order_by(TradingConfigRow.user_id)
        )).all()
        return [_config(row, TradingMode(mode)) for row, mode in rows]

    async def last_analyzed_at(self, user_id: int) -> datetime | None:
        return (await self._row(user_id)).last_analyzed_at

    async def mark_analyzed(self, user_id: int, when: datetime) -> None:
        (await self._row(user_id)).last_analyzed_at = when


class TradeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, trade: TradeRecord) -> TradeRecord:
        values = {k: getattr(trade, k) for k in TradeRecord.__dataclass_fields__ if k != "id"}
        values["status"] = trade.status.value
        values["exit_reason"] = trade.exit_reason.value if trade.exit_reason else None
        row = Trade(**values)
        self.session.add(row)
        await self.session.flush()
        return _trade(row)

    async def get(self, user_id: int, trade_id: int) -> TradeRecord | None:
        row = await self.session.get(Trade, trade_id)
        return _trade(row) if row is not None and row.user_id == user_id else None

    async def by_entry(self, entry_client_order_id: str) -> TradeRecord | None:
        row = await self.session.scalar(select(Trade).where(Trade.entry_client_order_id == entry_client_order_id))
        return _trade(row) if row is not None else None

    async def page(
        self, user_id: int, status: str | None = None, symbol: str | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[TradeRecord], int]:
        """One page of a user's trades, newest first, and how many match. Plain rows, not ORM objects (a page is
        read, never changed), one more than asked for: when that one is missing the total is known without
        counting, which is every page of a user whose trades fit on it."""
        table = Trade.__table__
        conditions = [table.c.user_id == user_id]
        if status:
            conditions.append(table.c.status == status)
        if symbol:
            conditions.append(table.c.symbol == symbol)
        query = (select(table).where(*conditions).order_by(table.c.executed_at.desc(), table.c.id.desc())
                 .limit(limit + 1).offset(offset))
        rows = (await self.session.execute(query)).all()
        if rows and len(rows) <= limit:
            total = offset + len(rows)
        elif not rows and offset == 0:
            total = 0
        else:
            total = await self.session.scalar(select(func.count()).select_from(table).where(*conditions)) or 0
        return [_trade(r) for r in rows[:limit]], total

    async def fingerprint(self, user_id: int) -> tuple[int, int]:
        """(trades, closed trades) of a user: trades change only by being added or closed, so a page read while
        these were the same is still the page."""
        closed = func.count().filter(Trade.status == TradeStatus.CLOSED.value)
        found = (await self.session.execute(select(func.count(), closed).where(Trade.user_id == user_id))).one()
        return int(found[0]), int(found[1])

    async def close(
        self, trade_id: int, exit_price: Decimal, exit_reason: ExitReason, exit_fee: Decimal,
        profit_loss: Decimal, profit_loss_percentage: Decimal, closed_at: datetime,
    ) -> TradeRecord:
        row = await self.session.get(Trade, trade_id, with_for_update=True)
        if row is None:
            raise LookupError(f"trade {trade_id} does not exist")
        row.status = TradeStatus.CLOSED.value
        row.exit_price = exit_price
        row.exit_reason = exit_reason.value
        row.exit_fee = exit_fee
        row.fees = row.entry_fee + exit_fee
        row.profit_loss = profit_loss
        row.profit_loss_percentage = profit_loss_percentage
        row.closed_at = closed_at
        row.duration_seconds = int((closed_at - row.executed_at).total_seconds())
        await self.session.flush()
        return _trade(row)

    async def entries_since(self, user_id: int, since: datetime) -> int:
        query = select(func.count()).where(Trade.user_id == user_id, Trade.executed_at >= since)
        return await self.session.scalar(query) or 0

    async def recent_results(self, user_id: int, count: int) -> tuple[bool, ...]:
        rows = await self.session.scalars(
            select(Trade).where(Trade.user_id == user_id, Trade.status == TradeStatus.CLOSED.value)
            .order_by(Trade.closed_at.desc(), Trade.id.desc()).limit(count)
        )
        return tuple((r.profit_loss or ZERO) > 0 for r in rows)

    async def closed(self, user_id: int) -> list[TradeRecord]:
        rows = await self.session.scalars(
            select(Trade).where(Trade.user_id == user_id, Trade.status == TradeStatus.CLOSED.value)
            .order_by(Trade.closed_at, Trade.id)
        )
        return [_trade(r) for r in rows]


class PositionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, position: PositionRecord) -> None:
        values = {k: getattr(position, k) for k in PositionRecord.__dataclass_fields__}
        self.session.add(OpenPosition(**values))
        await self.session.flush()

    async def for_user(self, user_id: int) -> list[PositionRecord]:
        rows = await self.session.scalars(
            select(OpenPosition).where(OpenPosition.user_id == user_id).order_by(OpenPosition.opened_at, OpenPosition.id)
        )
        return [_position(r) for r in rows]

    async def all(self) -> list[PositionRecord]:
        rows = await self.session.scalars(select(OpenPosition).order_by(OpenPosition.user_id, OpenPosition.id))
        return [_position(r) for r in rows]

    async def get(self, trade_id: int) -> PositionRecord | None:
        row = await self.session.scalar(select(OpenPosition).where(OpenPosition.trade_id == trade_id))
        return _position(row) if row else None

    async def closing(self, reason: ExitReason) -> list[PositionRecord]:
        """Positions whose exit for `reason` was asked for and is not finished yet."""
        rows = await self.session.scalars(
            select(OpenPosition).where(OpenPosition.closing_reason == reason.value).order_by(OpenPosition.trade_id)
        )
        return [_position(r) for r in rows]

    async def set_protection(self, trade_id: int, oco_order_id: str | None, stop: Decimal, target: Decimal) -> None:
        row = await self.session.scalar(select(OpenPosition).where(OpenPosition.trade_id == trade_id))
        if row is not None:
            row.oco_order_id = oco_order_id
            row.stop_loss = stop
            row.take_profit = target

    async def mark_closing(self, trade_id: int, reason: ExitReason) -> None:
        row = await self.session.scalar(select(OpenPosition).where(OpenPosition.trade_id == trade_id))
        if row is not None and row.closing_reason is None:
            row.closing_reason = reason.value

    async def remove(self, trade_id: int) -> bool:
        result = await self.session.execute(delete(OpenPosition).where(OpenPosition.trade_id == trade_id))
        return bool(getattr(result, "rowcount", 0))


class PortfolioRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(self, user_id: int, start_balance: Decimal, now: datetime) -> None:
        self.session.add(Portfolio(
            user_id=user_id, start_balance=start_balance, total_trades=0, winning_trades=0, losing_trades=0,
            total_realized_pnl=ZERO, total_fees=ZERO, updated_at=now,
        ))
        await self.session.flush()

    async def get(self, user_id: int) -> PortfolioStats:
        row = await self.session.get(Portfolio, user_id)
        if row is None:
            raise LookupError(f"user {user_id} has no portfolio")
        return PortfolioStats(
            user_id, row.start_balance, row.total_trades, row.winning_trades, row.losing_trades,
            row.total_realized_pnl, row.total_fees,
        )

    async def record_close(self, user_id: int, profit_loss: Decimal, fees: Decimal, now: datetime) -> None:
        row = await self.session.get(Portfolio, user_id, with_for_update=True)
        if row is None:
            raise LookupError(f"user {user_id} has no portfolio")
        row.total_trades += 1
        row.winning_trades += 1 if profit_loss > 0 else 0
        row.losing_trades += 0 if profit_loss > 0 else 1
        row.total_realized_pnl += profit_loss
        row.total_fees += fees
        row.updated_at = now


class DustRepository:
    """Per user and symbol, the base-asset remainder below the step size that the next exit sells, and its cost."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: int, symbol: str) -> Remainder:
        row = await self.session.get(DustBalance, (user_id, symbol))
        return Remainder(row.amount, row.cost) if row is not None else Remainder()

    async def set(self, user_id: int, symbol: str, remainder: Remainder) -> None:
        row = await self.session.get(DustBalance, (user_id, symbol))
        if row is None:
            self.session.add(DustBalance(user_id=user_id, symbol=symbol, amount=remainder.amount, cost=remainder.cost))
        else:
            row.amount, row.cost = remainder.amount, remainder.cost
