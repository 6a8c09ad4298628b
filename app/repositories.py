"""Repositories: map table rows to domain values and back. One unit of work per request or cycle step."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, time
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Select, case, delete, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.domain.records import (
    AddressAttempt,
    AnalysisRecord,
    EventRecord,
    LoginLimits,
    OrderRecord,
    PortfolioStats,
    PositionRecord,
    Purpose,
    TradeRecord,
    UserAccount,
    UsernameAttempt,
)
from app.domain.risk import TradingConfig
from app.domain.values import ZERO, Decision, ExitReason, Order, TradeStatus, TradingMode
from app.models import (
    Analysis,
    AnalysisDecision,
    DustBalance,
    Event,
    ExchangeCredential,
    LoginThrottle,
    OpenPosition,
    OrderRow,
    Portfolio,
    SimAccount,
    Trade,
    TradingConfigRow,
    User,
)


class AlreadyTaken(Exception):
    """The username or email belongs to another account (HTTP 409)."""

    def __init__(self, fields: list[str]) -> None:
        super().__init__(f"{' and '.join(fields)} already taken")
        self.fields = fields


def _user(row: User) -> UserAccount:
    return UserAccount(row.id, row.username, row.email, row.password_hash, TradingMode(row.mode), row.created_at)


def _hhmm(value: str | None) -> time | None:
    return None if value is None else time.fromisoformat(value)


def _config(row: TradingConfigRow, mode: TradingMode) -> TradingConfig:
    return TradingConfig(
        user_id=row.user_id,
        is_active=row.is_active,
        symbols=tuple(s for s in row.symbols.split(",") if s),
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


def _trade(row: Trade) -> TradeRecord:
    return TradeRecord(
        id=row.id,
        user_id=row.user_id,
        symbol=row.symbol,
        side=row.side,
        status=TradeStatus(row.status),
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
        exit_reason=ExitReason(row.exit_reason) if row.exit_reason else None,
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


def _order(row: OrderRow) -> OrderRecord:
    return OrderRecord(
        client_order_id=row.client_order_id, user_id=row.user_id, purpose=row.purpose, symbol=row.symbol,
        side=row.side, type=row.type, quantity=row.quantity, status=row.status, trade_id=row.trade_id,
        price=row.price, stop_price=row.stop_price, take_profit=row.take_profit, confidence=row.confidence,
        analysis_id=row.analysis_id, exchange_order_id=row.exchange_order_id,
        executed_qty=row.executed_qty, cumulative_quote_qty=row.cumulative_quote_qty, commission=row.commission,
        commission_asset=row.commission_asset, error=row.error, created_at=row.created_at,
        transact_time=row.transact_time,
    )


_ANALYSIS_FIELDS = (
    "symbol", "created_at", "analyzer", "signal", "confidence", "reasoning", "regime", "confluence_score",
    "last_price", "entry_price", "stop_loss", "take_profit", "model", "prompt", "prompt_version", "prompt_hash",
    "raw_response", "latency_ms", "input_tokens", "output_tokens", "cost_usd", "fallback_used", "error",
)


def _analysis(row: Analysis, decision: AnalysisDecision | None = None) -> AnalysisRecord:
    values = {name: getattr(row, name) for name in _ANALYSIS_FIELDS}
    if decision is not None:
        values["decision"] = Decision(decision.decision)
        values["reasons"] = tuple(json.loads(decision.reasons))
    return AnalysisRecord(id=row.id, **values)


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, username: str, email: str, password_hash: str, now: datetime) -> UserAccount:
        """Raises `AlreadyTaken` when a concurrent registration won the name or address (the unique indexes)."""
        row = User(username=username, email=email, password_hash=password_hash, mode="paper", created_at=now)
        self.session.add(row)
        try:
            await self.session.flush()
        except IntegrityError as e:
            await self.session.rollback()
            raise AlreadyTaken(await self.taken(username, email) or ["username or email"]) from e
        return _user(row)

    async def get(self, user_id: int) -> UserAccount | None:
        row = await self.session.get(User, user_id)
        return _user(row) if row else None

    async def by_username(self, username: str) -> UserAccount | None:
        """Whatever the capitalisation: `Alice` finds `alice`."""
        row = await self.session.scalar(select(User).where(func.lower(User.username) == func.lower(username)))
        return _user(row) if row else None

    async def taken(self, username: str, email: str) -> list[str]:
        """Which of the two another account already has, compared case-insensitively (as the unique indexes do)."""
        same_name = func.lower(User.username) == func.lower(username)
        same_email = func.lower(User.email) == func.lower(email)
        rows = (await self.session.execute(
            select(same_name.label("name"), same_email.label("email")).where(same_name | same_email)
        )).all()
        fields = []
        if any(r.name for r in rows):
            fields.append("username")
        if any(r.email for r in rows):
            fields.append("email")
        return fields

    async def set_mode(self, user_id: int, mode: TradingMode) -> None:
        row = await self.session.get(User, user_id)
        if row is not None:
            row.mode = mode.value


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
        query = select(Trade).where(Trade.user_id == user_id)
        if status:
            query = query.where(Trade.status == status)
        if symbol:
            query = query.where(Trade.symbol == symbol)
        total = await self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = await self.session.scalars(query.order_by(Trade.executed_at.desc(), Trade.id.desc()).limit(limit).offset(offset))
        return [_trade(r) for r in rows], total

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


class OrderRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, order: OrderRecord, now: datetime) -> None:
        values = {k: getattr(order, k) for k in OrderRecord.__dataclass_fields__ if k != "created_at"}
        self.session.add(OrderRow(**values, created_at=now, updated_at=now))
        await self.session.flush()

    async def get(self, client_order_id: str) -> OrderRecord | None:
        row = await self._row(client_order_id)
        return _order(row) if row else None

    async def _row(self, client_order_id: str) -> OrderRow | None:
        return await self.session.scalar(select(OrderRow).where(OrderRow.client_order_id == client_order_id))

    async def record_exchange_state(self, client_order_id: str, order: Order, now: datetime) -> None:
        row = await self._row(client_order_id)
        if row is None:
            raise LookupError(f"no order row for client id {client_order_id}")
        row.status = order.status.value
        row.exchange_order_id = str(order.order_id)
        row.executed_qty = order.executed_qty
        row.cumulative_quote_qty = order.cumulative_quote_qty
        fills = order.fills
        row.commission = sum((f.commission for f in fills), ZERO)
        row.commission_asset = fills[0].commission_asset if fills else None
        row.transact_time = order.transact_time
        row.updated_at = now

    async def mark(self, client_order_id: str, status: str, now: datetime, error: str | None = None,
                   trade_id: int | None = None) -> None:
        row = await self._row(client_order_id)
        if row is None:
            raise LookupError(f"no order row for client id {client_order_id}")
        row.status = status
        row.updated_at = now
        if error is not None:
            row.error = error
        if trade_id is not None:
            row.trade_id = trade_id

    async def with_status(self, user_id: int, statuses: Sequence[str], purpose: str | None = None) -> list[OrderRecord]:
        query = select(OrderRow).where(OrderRow.user_id == user_id, OrderRow.status.in_(statuses))
        if purpose:
            query = query.where(OrderRow.purpose == purpose)
        return [_order(r) for r in await self.session.scalars(query.order_by(OrderRow.id))]

    async def for_trade(self, trade_id: int, purpose: str) -> list[OrderRecord]:
        query = select(OrderRow).where(OrderRow.trade_id == trade_id, OrderRow.purpose == purpose)
        return [_order(r) for r in await self.session.scalars(query.order_by(OrderRow.id))]

    async def unbooked_entries(self) -> list[OrderRecord]:
        """Entries of every user without their trade that may have bought something: sent (or maybe sent) and not
        final without a fill. Reconciliation books or drops each."""
        # money is text on SQLite, so "nothing executed" is decided here, not in SQL; REJECTED rows (the common
        # never-filled entry) are left out in SQL, so the rows read stay few
        query = select(OrderRow).where(OrderRow.purpose == Purpose.ENTRY, OrderRow.trade_id.is_(None),
                                       OrderRow.status != "REJECTED")
        rows = [_order(r) for r in await self.session.scalars(query.order_by(OrderRow.id))]
        return [row for row in rows if row.unbooked_entry]


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
    """Per user and symbol, the base-asset remainder below the step size that the next exit sells."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: int, symbol: str) -> Decimal:
        row = await self.session.get(DustBalance, (user_id, symbol))
        return row.amount if row is not None else ZERO

    async def set(self, user_id: int, symbol: str, amount: Decimal) -> None:
        row = await self.session.get(DustBalance, (user_id, symbol))
        if row is None:
            self.session.add(DustBalance(user_id=user_id, symbol=symbol, amount=amount))
        else:
            row.amount = amount


class AnalysisRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, record: AnalysisRecord) -> int:
        row = Analysis(**{name: getattr(record, name) for name in _ANALYSIS_FIELDS})
        self.session.add(row)
        await self.session.flush()
        return row.id

    async def add_decision(
        self, analysis_id: int, user_id: int, decision: Decision, reasons: Sequence[str], now: datetime,
        trade_id: int | None = None,
    ) -> None:
        self.session.add(AnalysisDecision(
            analysis_id=analysis_id, user_id=user_id, decision=decision.value, reasons=json.dumps(list(reasons)),
            trade_id=trade_id, created_at=now,
        ))

    async def for_user(self, user_id: int, symbol: str | None = None, limit: int = 50) -> list[AnalysisRecord]:
        query = (
            select(Analysis, AnalysisDecision)
            .join(AnalysisDecision, AnalysisDecision.analysis_id == Analysis.id)
            .where(AnalysisDecision.user_id == user_id)
        )
        if symbol:
            query = query.where(Analysis.symbol == symbol)
        rows = (await self.session.execute(query.order_by(Analysis.created_at.desc(), Analysis.id.desc()).limit(limit))).all()
        return [_analysis(a, d) for a, d in rows]

    async def latest_time(self) -> datetime | None:
        return await self.session.scalar(select(func.max(Analysis.created_at)))

    async def recorded(self, symbol: str | None = None) -> list[AnalysisRecord]:
        """Calls whose raw model answer is stored: what replays and exports need."""
        query = select(Analysis).where(Analysis.raw_response.is_not(None), Analysis.prompt_hash.is_not(None))
        if symbol:
            query = query.where(Analysis.symbol == symbol)
        return [_analysis(r) for r in await self.session.scalars(query.order_by(Analysis.id))]


class EventRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, event: EventRecord) -> EventRecord:
        row = Event(user_id=event.user_id, type=event.type, time=event.time, data=json.dumps(event.data, default=str))
        self.session.add(row)
        await self.session.flush()
        return EventRecord(event.user_id, event.type, event.time, event.data, row.id)

    async def for_user(self, user_id: int, limit: int = 100) -> list[EventRecord]:
        rows = await self.session.scalars(
            select(Event).where(Event.user_id == user_id).order_by(Event.id.desc()).limit(limit)
        )
        return [EventRecord(r.user_id, r.type, r.time, json.loads(r.data), r.id) for r in rows]


class CredentialRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: int) -> ExchangeCredential | None:
        return await self.session.scalar(select(ExchangeCredential).where(ExchangeCredential.user_id == user_id))

    async def upsert(self, user_id: int, key_token: str, secret_token: str, masked: str, mode: str, now: datetime) -> None:
        row = await self.get(user_id)
        if row is None:
            row = ExchangeCredential(user_id=user_id)
            self.session.add(row)
        row.api_key_encrypted, row.api_secret_encrypted = key_token, secret_token
        row.api_key_masked, row.mode, row.updated_at = masked, mode, now
        await self.session.flush()

    async def delete(self, user_id: int) -> bool:
        result = await self.session.execute(delete(ExchangeCredential).where(ExchangeCredential.user_id == user_id))
        return bool(getattr(result, "rowcount", 0))


def _ms(value: int) -> Any:
    """A millisecond value bound as BIGINT (PostgreSQL would take a bare literal next to an INTEGER as int4)."""
    return literal(value, BigInteger())


class ThrottleRepository:
    """Login throttle counters, each changed by one INSERT ... ON CONFLICT DO UPDATE ... RETURNING statement: the
    database serialises concurrent attempts on a key, on SQLite and PostgreSQL alike."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _insert(self) -> Any:
        dialect = self.session.get_bind().dialect.name
        return (postgresql_insert if dialect == "postgresql" else sqlite_insert)(LoginThrottle)

    async def reserve_address(self, key: str, now_ms: int, limits: LoginLimits) -> AddressAttempt:
        """Counts an attempt unless the address must still wait; an attempt past the free ones sets the next wait
        (the previous one doubled, up to the cap)."""
        t = LoginThrottle
        now, zero = _ms(now_ms), _ms(0)
        first, cap = _ms(limits.address_backoff_s * 1000), _ms(limits.address_max_backoff_s * 1000)
        blocked = t.blocked_until_ms > now
        forgotten = t.last_attempt_ms <= _ms(now_ms - limits.address_window_s * 1000)
        attempts = case((forgotten, 1), else_=t.attempts + 1)
        free = attempts <= limits.address_free_attempts
        backoff = case(
            (free, zero), ((t.backoff_ms == 0) | forgotten, first), (t.backoff_ms * 2 > cap, cap),
            else_=t.backoff_ms * 2,
        )
        statement = self._insert().values(  # a first attempt is free (LOGIN_ADDRESS_FREE_ATTEMPTS >= 1)
            key=key, attempts=1, window_start_ms=now_ms, last_attempt_ms=now_ms, blocked_until_ms=0, backoff_ms=0,
            allowed=True,
        )
        statement = statement.on_conflict_do_update(index_elements=[t.key], set_={
            "attempts": case((blocked, t.attempts), else_=attempts),
            "window_start_ms": case((blocked, t.window_start_ms), (forgotten, now), else_=t.window_start_ms),
            "last_attempt_ms": case((blocked, t.last_attempt_ms), else_=now),
            "backoff_ms": case((blocked, t.backoff_ms), else_=backoff),
            "blocked_until_ms": case((blocked, t.blocked_until_ms), (free, zero), else_=now + backoff),
            "allowed": case((blocked, False), else_=True),
        }).returning(t.allowed, t.attempts, t.blocked_until_ms)
        row = (await self.session.execute(statement)).one()
        return AddressAttempt(bool(row.allowed), row.attempts, row.blocked_until_ms)

    async def reserve_username(self, key: str, now_ms: int, window_ms: int) -> UsernameAttempt:
        """Counts an attempt on a username in its window (a new window starts once the last one has passed)."""
        t = LoginThrottle
        expired = t.window_start_ms <= _ms(now_ms - window_ms)
        statement = self._insert().values(
            key=key, attempts=1, window_start_ms=now_ms, last_attempt_ms=now_ms, blocked_until_ms=0, backoff_ms=0,
            allowed=True,
        )
        statement = statement.on_conflict_do_update(index_elements=[t.key], set_={
            "attempts": case((expired, 1), else_=t.attempts + 1),
            "window_start_ms": case((expired, _ms(now_ms)), else_=t.window_start_ms),
            "last_attempt_ms": _ms(now_ms),
        }).returning(t.attempts, t.window_start_ms)
        row = (await self.session.execute(statement)).one()
        return UsernameAttempt(row.attempts, row.window_start_ms)

    async def refund(self, key: str) -> None:
        """A correct password: its attempt is not held against the address."""
        await self.session.execute(
            update(LoginThrottle).where(LoginThrottle.key == key, LoginThrottle.attempts > 0)
            .values(attempts=LoginThrottle.attempts - 1)
        )

    async def forget(self, key: str) -> None:
        await self.session.execute(delete(LoginThrottle).where(LoginThrottle.key == key))

    async def prune(self, older_than_ms: int, now_ms: int) -> int:
        """Deletes rows without an attempt since `older_than_ms` that block nothing any more."""
        result = await self.session.execute(
            delete(LoginThrottle).where(LoginThrottle.last_attempt_ms < older_than_ms,
                                        LoginThrottle.blocked_until_ms <= now_ms)
        )
        return int(getattr(result, "rowcount", 0) or 0)


class SimAccountRepository:
    """Persists the simulated exchange's account state as JSON."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def load(self, account_id: str) -> dict[str, Any] | None:
        row = await self.session.get(SimAccount, account_id)
        return json.loads(row.state) if row else None

    async def save(self, account_id: str, state: dict[str, Any], now: datetime) -> None:
        row = await self.session.get(SimAccount, account_id)
        if row is None:
            row = SimAccount(account_id=account_id)
            self.session.add(row)
        row.state, row.updated_at = json.dumps(state, sort_keys=True), now


class UnitOfWork:
    """All repositories on one session; nothing is written unless `commit` is called."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.users = UserRepository(session)
        self.configs = ConfigRepository(session)
        self.trades = TradeRepository(session)
        self.orders = OrderRepository(session)
        self.positions = PositionRepository(session)
        self.portfolios = PortfolioRepository(session)
        self.dust = DustRepository(session)
        self.analyses = AnalysisRepository(session)
        self.events = EventRepository(session)
        self.credentials = CredentialRepository(session)
        self.throttle = ThrottleRepository(session)
        self.sim_accounts = SimAccountRepository(session)

    async def commit(self) -> None:
        await self.session.commit()

    async def rollback(self) -> None:
        await self.session.rollback()


class UnitOfWorkFactory:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[UnitOfWork]:
        # leaving the session closes it, and closing rolls back whatever was not committed (also on errors)
        async with self.sessions() as session:
            yield UnitOfWork(session)
