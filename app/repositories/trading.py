"""The trading books: configs, trades, open positions, portfolio totals and dust."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, time
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Row, Select, Table, bindparam, delete, func, insert, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.records import PortfolioStats, PositionRecord, Remainder, TradeRecord
from app.domain.risk import TradingConfig
from app.domain.values import ZERO, ExitReason, TradeStatus, TradingMode
from app.models import DustBalance, OpenPosition, Portfolio, Trade, TradingConfigRow, User

IN_LIST_SIZE = 1000  # ids per `IN (...)`: far below SQLite's and asyncpg's limits on bound parameters


def chunks(ids: Sequence[int], size: int = IN_LIST_SIZE) -> Iterator[Sequence[int]]:
    """The ids in slices a query can bind: set-based reads and writes of many users take one statement per slice."""
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


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


def _position(row: Any) -> PositionRecord:  # an OpenPosition, or a row of _POSITION_COLUMNS
    return PositionRecord(
        row.trade_id, row.user_id, row.symbol, row.amount, row.entry_price, row.stop_loss, row.take_profit,
        row.oco_order_id, row.opened_at, ExitReason(row.closing_reason) if row.closing_reason else None,
    )


# the columns a position record is read from: plain rows, without the ORM's bookkeeping (a cycle reads every position)
_POSITION_COLUMNS = (OpenPosition.trade_id, OpenPosition.user_id, OpenPosition.symbol, OpenPosition.amount,
                     OpenPosition.entry_price, OpenPosition.stop_loss, OpenPosition.take_profit,
                     OpenPosition.oco_order_id, OpenPosition.opened_at, OpenPosition.closing_reason)


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

    async def analyzed_at(self, user_ids: Sequence[int]) -> dict[int, datetime]:
        found: dict[int, datetime] = {}
        for part in chunks(user_ids):
            rows = await self.session.execute(
                select(TradingConfigRow.user_id, TradingConfigRow.last_analyzed_at)
                .where(TradingConfigRow.user_id.in_(part), TradingConfigRow.last_analyzed_at.is_not(None))
            )
            found.update((user_id, when) for user_id, when in rows if when is not None)
        return found

    async def mark_analyzed(self, user_ids: Sequence[int], when: datetime) -> set[int]:
        """Conditional, so two processes deciding the same user in one cycle (a batch redone while its first worker
        still writes) mark it once: the second's UPDATE waits for the first's row lock, then finds it marked."""
        marked: set[int] = set()
        for part in chunks(user_ids):
            rows = await self.session.execute(
                update(TradingConfigRow)
                .where(TradingConfigRow.user_id.in_(part),
                       or_(TradingConfigRow.last_analyzed_at.is_(None), TradingConfigRow.last_analyzed_at < when))
                .values(last_analyzed_at=when).returning(TradingConfigRow.user_id)
                .execution_options(synchronize_session=False)
            )
            marked.update(rows.scalars())
        return marked

    async def position_timeouts(self, user_ids: Sequence[int]) -> dict[int, int]:
        found: dict[int, int] = {}
        for part in chunks(user_ids):
            rows = await self.session.execute(
                select(TradingConfigRow.user_id, TradingConfigRow.position_timeout_minutes)
                .where(TradingConfigRow.user_id.in_(part))
            )
            found.update((key, value) for key, value in rows)
        return found



def _trade_filter(user_id: int, status: str | None, symbol: str | None) -> list[Any]:
    """The WHERE of a user's trades, narrowed by status and symbol when given (a page and an export alike)."""
    table = Trade.__table__
    conditions: list[Any] = [table.c.user_id == user_id]
    if status:
        conditions.append(table.c.status == status)
    if symbol:
        conditions.append(table.c.symbol == symbol)
    return conditions

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

    async def add_many(self, trades: Sequence[TradeRecord]) -> list[TradeRecord]:
        """One INSERT for them all, then their ids read back by their unique entry client ids (a batch's ids cannot
        be returned in order on SQLite)."""
        if not trades:
            return []
        rows = []
        for trade in trades:
            values = {k: getattr(trade, k) for k in TradeRecord.__dataclass_fields__ if k != "id"}
            values["status"] = trade.status.value
            values["exit_reason"] = trade.exit_reason.value if trade.exit_reason else None
            rows.append(values)
        await self.session.execute(insert(Trade), rows)
        client_ids = [t.entry_client_order_id for t in trades]
        ids: dict[str, int] = {}
        for start in range(0, len(client_ids), IN_LIST_SIZE):
            found = await self.session.execute(select(Trade.entry_client_order_id, Trade.id)
                                               .where(Trade.entry_client_order_id.in_(client_ids[start:start + IN_LIST_SIZE])))
            ids.update((client_id, trade_id) for client_id, trade_id in found)
        return [dataclasses.replace(t, id=ids[t.entry_client_order_id]) for t in trades]

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
        conditions = _trade_filter(user_id, status, symbol)
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

    async def page_after(
        self, user_id: int, status: str | None, symbol: str | None, limit: int,
        after: tuple[datetime, int] | None = None,
    ) -> list[TradeRecord]:
        """Up to `limit` trades, newest first, older than `after` (the last one of the previous page's
        (executed_at, id)): every page costs the same, however deep (an export reads them all)."""
        table = Trade.__table__
        conditions = _trade_filter(user_id, status, symbol)
        if after is not None:
            executed_at, trade_id = after
            conditions.append((table.c.executed_at < executed_at)
                              | ((table.c.executed_at == executed_at) & (table.c.id < trade_id)))
        query = select(table).where(*conditions).order_by(table.c.executed_at.desc(), table.c.id.desc()).limit(limit)
        return [_trade(r) for r in await self.session.execute(query)]

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

    async def entry_counts_since(self, user_ids: Sequence[int], since: datetime) -> dict[int, int]:
        found: dict[int, int] = {}
        for part in chunks(user_ids):
            rows = await self.session.execute(
                select(Trade.user_id, func.count()).where(Trade.user_id.in_(part), Trade.executed_at >= since)
                .group_by(Trade.user_id)
            )
            found.update((key, value) for key, value in rows)
        return found

    async def recent_results_of(self, user_ids: Sequence[int], count: int) -> dict[int, tuple[bool, ...]]:
        """Each user's last `count` closed trades, newest first, in one window query per slice of users."""
        found: dict[int, list[bool]] = {}
        for part in chunks(user_ids):
            newest = func.row_number().over(partition_by=Trade.user_id,
                                            order_by=(Trade.closed_at.desc(), Trade.id.desc()))
            ranked = (select(Trade.user_id, Trade.profit_loss, newest.label("n"))
                      .where(Trade.user_id.in_(part), Trade.status == TradeStatus.CLOSED.value).subquery())
            rows = await self.session.execute(
                select(ranked.c.user_id, ranked.c.profit_loss).where(ranked.c.n <= count)
                .order_by(ranked.c.user_id, ranked.c.n)
            )
            for user_id, profit in rows:
                found.setdefault(user_id, []).append((profit or ZERO) > 0)
        return {user_id: tuple(results) for user_id, results in found.items()}

    async def closed(self, user_id: int) -> list[TradeRecord]:
        """Every closed trade of a user, by exit time (plain rows: the statistics read them, never change them)."""
        table = Trade.__table__
        rows = await self.session.execute(
            select(table).where(table.c.user_id == user_id, table.c.status == TradeStatus.CLOSED.value)
            .order_by(table.c.closed_at, table.c.id)
        )
        return [_trade(r) for r in rows]


class PositionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._rows: dict[int, OpenPosition] = {}  # by trade id, as this unit of work read or wrote them

    async def add(self, position: PositionRecord) -> None:
        values = {k: getattr(position, k) for k in PositionRecord.__dataclass_fields__}
        row = OpenPosition(**values)
        self.session.add(row)
        await self.session.flush()
        self._rows[position.trade_id] = row

    async def add_many(self, positions: Sequence[PositionRecord]) -> None:
        if positions:
            await self.session.execute(insert(OpenPosition), [
                {k: getattr(p, k) for k in PositionRecord.__dataclass_fields__} for p in positions
            ])

    async def _row(self, trade_id: int) -> OpenPosition | None:
        row = self._rows.get(trade_id)
        if row is None:
            row = await self.session.scalar(select(OpenPosition).where(OpenPosition.trade_id == trade_id))
            if row is not None:
                self._rows[trade_id] = row
        return row

    async def for_user(self, user_id: int) -> list[PositionRecord]:
        rows = await self.session.execute(
            select(*_POSITION_COLUMNS).where(OpenPosition.user_id == user_id)
            .order_by(OpenPosition.opened_at, OpenPosition.id)
        )
        return [_position(r) for r in rows]

    async def for_users(self, user_ids: Sequence[int]) -> dict[int, list[PositionRecord]]:
        found: dict[int, list[PositionRecord]] = {}
        for part in chunks(user_ids):
            rows = await self.session.execute(
                select(*_POSITION_COLUMNS).where(OpenPosition.user_id.in_(part))
                .order_by(OpenPosition.user_id, OpenPosition.opened_at, OpenPosition.id)
            )
            for row in rows:
                found.setdefault(row.user_id, []).append(_position(row))
        return found

    async def all(self) -> list[PositionRecord]:
        rows = await self.session.execute(select(*_POSITION_COLUMNS).order_by(OpenPosition.user_id, OpenPosition.id))
        return [_position(r) for r in rows]

    async def get(self, trade_id: int) -> PositionRecord | None:
        row = await self._row(trade_id)
        return _position(row) if row else None

    async def closing(self, reason: ExitReason) -> list[PositionRecord]:
        """Positions whose exit for `reason` was asked for and is not finished yet."""
        rows = await self.session.scalars(
            select(OpenPosition).where(OpenPosition.closing_reason == reason.value).order_by(OpenPosition.trade_id)
        )
        return [_position(r) for r in rows]

    async def set_protection(self, trade_id: int, oco_order_id: str | None, stop: Decimal, target: Decimal) -> None:
        row = self._rows.get(trade_id)
        if row is None:  # one UPDATE, without reading the row first
            await self.session.execute(update(OpenPosition).where(OpenPosition.trade_id == trade_id)
                                       .values(oco_order_id=oco_order_id, stop_loss=stop, take_profit=target))
            return
        row.oco_order_id = oco_order_id
        row.stop_loss = stop
        row.take_profit = target

    async def set_protections(self, links: Sequence[tuple[int, str, Decimal, Decimal]]) -> None:
        if links:
            table = cast(Table, OpenPosition.__table__)  # Core: an UPDATE sent once for many rows
            await self.session.execute(
                update(table).where(table.c.trade_id == bindparam("trade"))
                .values(oco_order_id=bindparam("list_id"), stop_loss=bindparam("stop"), take_profit=bindparam("target")),
                [{"trade": t, "list_id": list_id, "stop": stop, "target": target} for t, list_id, stop, target in links],
            )
            for trade_id, list_id, stop, target in links:  # rows this unit of work holds follow
                row = self._rows.get(trade_id)
                if row is not None:
                    row.oco_order_id, row.stop_loss, row.take_profit = list_id, stop, target

    async def mark_closing(self, trade_id: int, reason: ExitReason) -> None:
        row = self._rows.get(trade_id)
        if row is None:  # one UPDATE, without reading the row first
            await self.session.execute(update(OpenPosition).where(OpenPosition.trade_id == trade_id,
                                                                  OpenPosition.closing_reason.is_(None))
                                       .values(closing_reason=reason.value))
        elif row.closing_reason is None:
            row.closing_reason = reason.value

    async def remove(self, trade_id: int) -> bool:
        self._rows.pop(trade_id, None)
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
        self._read: dict[tuple[int, str], DustBalance | None] = {}  # rows (or their absence) this unit of work read

    async def _row(self, user_id: int, symbol: str) -> DustBalance | None:
        key = (user_id, symbol)
        if key not in self._read:
            self._read[key] = await self.session.get(DustBalance, key)
        return self._read[key]

    async def get(self, user_id: int, symbol: str) -> Remainder:
        row = await self._row(user_id, symbol)
        return Remainder(row.amount, row.cost) if row is not None else Remainder()

    async def set(self, user_id: int, symbol: str, remainder: Remainder) -> None:
        row = await self._row(user_id, symbol)
        if row is None:
            row = DustBalance(user_id=user_id, symbol=symbol, amount=remainder.amount, cost=remainder.cost)
            self.session.add(row)
            self._read[(user_id, symbol)] = row
        else:
            row.amount, row.cost = remainder.amount, remainder.cost

    async def get_many(self, keys: Sequence[tuple[int, str]]) -> dict[tuple[int, str], Remainder]:
        unread = [k for k in keys if k not in self._read]
        for start in range(0, len(unread), IN_LIST_SIZE):
            part = unread[start:start + IN_LIST_SIZE]
            rows = await self.session.scalars(
                select(DustBalance).where(tuple_(DustBalance.user_id, DustBalance.symbol).in_(part)))
            found = {(r.user_id, r.symbol): r for r in rows}
            self._read.update((k, found.get(k)) for k in part)
        return {k: Remainder(row.amount, row.cost) if (row := self._read[k]) is not None else Remainder()
                for k in keys}

    async def set_many(self, remainders: Mapping[tuple[int, str], Remainder]) -> None:
        """The rows read in this unit of work change in place (flushed together), the others are inserted at once."""
        await self.get_many(list(remainders))
        new = [key for key in remainders if self._read[key] is None]
        for key, remainder in remainders.items():
            row = self._read[key]
            if row is not None:
                row.amount, row.cost = remainder.amount, remainder.cost
        if new:
            await self.session.execute(insert(DustBalance), [
                {"user_id": user_id, "symbol": symbol, "amount": remainders[(user_id, symbol)].amount,
                 "cost": remainders[(user_id, symbol)].cost} for user_id, symbol in new
            ])
            for key in new:  # read again if asked: the rows now exist
                del self._read[key]
