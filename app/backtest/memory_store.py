"""An in-memory unit of work with the repositories' method names and semantics, for fast single-process backtests."""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from app.domain.records import (
    AnalysisRecord,
    DecisionRecord,
    DecisionSpan,
    DecisionTally,
    EventRecord,
    OrderRecord,
    PortfolioStats,
    PositionRecord,
    Remainder,
    RowStatus,
    TradeRecord,
)
from app.domain.risk import TradingConfig
from app.domain.values import PROFILE_NOTE, ZERO, Decision, ExitReason, Order, TradeStatus, canonical


def _canonical_fields(record: Any, names: Sequence[str]) -> Any:
    changes = {n: canonical(v) for n in names if isinstance(v := getattr(record, n), Decimal)}
    return dataclasses.replace(record, **changes)


_TRADE_MONEY = ("amount", "price", "stop_loss", "take_profit", "entry_fee", "fees", "exit_price", "exit_fee",
                "profit_loss", "profit_loss_percentage")
_POSITION_MONEY = ("amount", "entry_price", "stop_loss", "take_profit")
_ORDER_MONEY = ("quantity", "price", "stop_price", "take_profit", "executed_qty", "cumulative_quote_qty", "commission")


@dataclasses.dataclass(slots=True)
class AnalysisDecisionRow:
    analysis_id: int
    user_id: int
    decision: Decision
    reasons: tuple[str, ...]
    created_at: datetime
    trade_id: int | None = None


class MemoryTables:
    """Every table the engine writes, as plain Python containers (rows are frozen records, replaced on update)."""

    def __init__(self) -> None:
        self.configs: dict[int, TradingConfig] = {}
        self.last_analyzed: dict[int, datetime] = {}
        self.trades: dict[int, TradeRecord] = {}
        self.entry_times: dict[int, list[datetime]] = {}  # per user, ascending (entries happen in time order)
        self.closed: dict[int, list[TradeRecord]] = {}  # per user, in closing order
        self.orders: dict[str, OrderRecord] = {}
        self.unbooked_entries: dict[str, OrderRecord] = {}  # what reconciliation reads (OrderRecord.unbooked_entry)
        self.orders_by_trade: dict[int, list[str]] = {}  # trade id -> client ids, in writing order
        self.trade_by_entry: dict[str, int] = {}
        self.positions: dict[int, PositionRecord] = {}  # trade id -> position, insertion order = row id order
        self.portfolios: dict[int, PortfolioStats] = {}
        self.dust: dict[tuple[int, str], Remainder] = {}
        self.analyses: list[AnalysisRecord] = []
        self.decisions: list[AnalysisDecisionRow] = []
        self.tallies: list[DecisionTally] = []
        self.spans: list[DecisionSpan] = []
        self.events: list[EventRecord] = []
        self.analysis_count = 0
        self.decision_counts: dict[tuple[str, str], int] = {}  # (decision, reason key) -> count, from the tallies
        self.event_counts: dict[str, int] = {}
        self.keep_analyses = False  # the decision log (analyses, rows, tallies, spans): tests switch it on


def _closing_key(trade: TradeRecord) -> tuple[datetime, int]:
    return (trade.closed_at or trade.executed_at, trade.id)


class MemoryConfigs:
    def __init__(self, t: MemoryTables) -> None:
        self.t = t

    async def create(self, config: TradingConfig, now: datetime) -> None:
        self.t.configs[config.user_id] = _canonical_fields(config, ("risk_per_trade_pct", "max_balance_trade_ratio"))

    async def get(self, user_id: int) -> TradingConfig:
        found = self.t.configs.get(user_id)
        if found is None:
            raise LookupError(f"user {user_id} has no trading config")
        return found

    async def save(self, config: TradingConfig, now: datetime) -> None:
        await self.get(config.user_id)
        await self.create(config, now)

    async def active(self) -> list[TradingConfig]:
        return [c for _, c in sorted(self.t.configs.items()) if c.is_active]

    async def analyzed_at(self, user_ids: Sequence[int]) -> dict[int, datetime]:
        last = self.t.last_analyzed
        return {u: last[u] for u in user_ids if u in last}

    async def mark_analyzed(self, user_ids: Sequence[int], when: datetime) -> set[int]:
        marked = set()
        for user_id in user_ids:
            last = self.t.last_analyzed.get(user_id)
            if last is None or last < when:
                self.t.last_analyzed[user_id] = when
                marked.add(user_id)
        return marked

    async def position_timeouts(self, user_ids: Sequence[int]) -> dict[int, int]:
        return {u: c.position_timeout_minutes for u in user_ids if (c := self.t.configs.get(u)) is not None}


class MemoryTrades:
    def __init__(self, t: MemoryTables) -> None:
        self.t = t

    async def add(self, trade: TradeRecord) -> TradeRecord:
        stored = _canonical_fields(dataclasses.replace(trade, id=len(self.t.trades) + 1), _TRADE_MONEY)
        self.t.trades[stored.id] = stored
        self.t.trade_by_entry[stored.entry_client_order_id] = stored.id
        times = self.t.entry_times.setdefault(stored.user_id, [])
        bisect.insort(times, stored.executed_at)
        return stored

    async def add_many(self, trades: Sequence[TradeRecord]) -> list[TradeRecord]:
        return [await self.add(t) for t in trades]

    async def get(self, user_id: int, trade_id: int) -> TradeRecord | None:
        found = self.t.trades.get(trade_id)
        return found if found is not None and found.user_id == user_id else None

    async def by_entry(self, entry_client_order_id: str) -> TradeRecord | None:
        trade_id = self.t.trade_by_entry.get(entry_client_order_id)
        return self.t.trades.get(trade_id) if trade_id is not None else None

    async def close(
        self, trade_id: int, exit_price: Decimal, exit_reason: ExitReason, exit_fee: Decimal,
        profit_loss: Decimal, profit_loss_percentage: Decimal, closed_at: datetime,
    ) -> TradeRecord:
        row = self.t.trades.get(trade_id)
        if row is None:
            raise LookupError(f"trade {trade_id} does not exist")
        closed = _canonical_fields(dataclasses.replace(
            row, status=TradeStatus.CLOSED, exit_price=exit_price, exit_reason=exit_reason, exit_fee=exit_fee,
            fees=row.entry_fee + exit_fee, profit_loss=profit_loss, profit_loss_percentage=profit_loss_percentage,
            closed_at=closed_at, duration_seconds=int((closed_at - row.executed_at).total_seconds()),
        ), _TRADE_MONEY)
        self.t.trades[trade_id] = closed
        # kept in (closed_at, id) order: a cycle may book an earlier-filled leg after a later one
        bisect.insort(self.t.closed.setdefault(closed.user_id, []), closed, key=_closing_key)
        return closed

    async def entries_since(self, user_id: int, since: datetime) -> int:
        times = self.t.entry_times.get(user_id, [])
        return len(times) - bisect.bisect_left(times, since)

    async def recent_results(self, user_id: int, count: int) -> tuple[bool, ...]:
        """Newest first by (closed_at, id), as the SQL query orders them."""
        closed = self.t.closed.get(user_id, [])
        return tuple((r.profit_loss or ZERO) > 0 for r in reversed(closed[-count:])) if count > 0 else ()

    async def entry_counts_since(self, user_ids: Sequence[int], since: datetime) -> dict[int, int]:
        counts = {u: await self.entries_since(u, since) for u in user_ids}
        return {u: n for u, n in counts.items() if n}

    async def recent_results_of(self, user_ids: Sequence[int], count: int) -> dict[int, tuple[bool, ...]]:
        results = {u: await self.recent_results(u, count) for u in user_ids}
        return {u: r for u, r in results.items() if r}

    async def closed(self, user_id: int) -> list[TradeRecord]:
        return list(self.t.closed.get(user_id, []))

    async def page(self, user_id: int, status: str | None = None, symbol: str | None = None, limit: int = 50,
                   offset: int = 0) -> tuple[list[TradeRecord], int]:
        rows = [r for r in self.t.trades.values() if r.user_id == user_id and (not status or r.status == status)
                and (not symbol or r.symbol == symbol)]
        rows.sort(key=lambda r: (r.executed_at, r.id), reverse=True)
        return rows[offset : offset + limit], len(rows)

    def all(self) -> list[TradeRecord]:
        return [r for _, r in sorted(self.t.trades.items())]


class MemoryOrders:
    def __init__(self, t: MemoryTables) -> None:
        self.t = t

    async def add(self, order: OrderRecord, now: datetime) -> None:
        if order.client_order_id in self.t.orders:
            raise ValueError(f"duplicate client order id {order.client_order_id}")
        self._store(_canonical_fields(dataclasses.replace(order, created_at=now), _ORDER_MONEY))

    def _store(self, row: OrderRecord) -> None:
        client_id = row.client_order_id
        earlier = self.t.orders.get(client_id)
        self.t.orders[client_id] = row
        if row.trade_id is not None and (earlier is None or earlier.trade_id != row.trade_id):
            self.t.orders_by_trade.setdefault(row.trade_id, []).append(client_id)
        if row.unbooked_entry:
            self.t.unbooked_entries[client_id] = row
        else:
            self.t.unbooked_entries.pop(client_id, None)

    async def add_many(self, orders: Sequence[OrderRecord], now: datetime) -> None:
        for order in orders:
            await self.add(order, now)

    async def get(self, client_order_id: str) -> OrderRecord | None:
        return self.t.orders.get(client_order_id)

    def _row(self, client_order_id: str) -> OrderRecord:
        row = self.t.orders.get(client_order_id)
        if row is None:
            raise LookupError(f"no order row for client id {client_order_id}")
        return row

    async def record_exchange_state(self, client_order_id: str, order: Order, now: datetime,
                                    trade_id: int | None = None) -> None:
        fills = order.fills
        row = self._row(client_order_id)
        self._store(_canonical_fields(dataclasses.replace(
            row, status=RowStatus.of(order.status), exchange_order_id=str(order.order_id),
            executed_qty=order.executed_qty, cumulative_quote_qty=order.cumulative_quote_qty,
            commission=sum((f.commission for f in fills), ZERO),
            commission_asset=fills[0].commission_asset if fills else None, transact_time=order.transact_time,
            trade_id=row.trade_id if trade_id is None else trade_id,
        ), _ORDER_MONEY))

    async def record_exchange_states(self, states: Sequence[tuple[str, Order, int | None]], now: datetime) -> None:
        for client_order_id, order, trade_id in states:
            await self.record_exchange_state(client_order_id, order, now, trade_id)

    async def mark(self, client_order_id: str, status: RowStatus, now: datetime, error: str | None = None,
                   trade_id: int | None = None) -> None:
        row = dataclasses.replace(self._row(client_order_id), status=status)
        if error is not None:
            row = dataclasses.replace(row, error=error)
        if trade_id is not None:
            row = dataclasses.replace(row, trade_id=trade_id)
        self._store(row)

    async def mark_many(self, marks: Sequence[tuple[str, RowStatus]], now: datetime) -> None:
        for client_order_id, status in marks:
            await self.mark(client_order_id, status, now)

    async def unbooked_entries(self) -> list[OrderRecord]:
        return list(self.t.unbooked_entries.values())

    async def for_trade(self, trade_id: int, purpose: str) -> list[OrderRecord]:
        rows = (self.t.orders[i] for i in self.t.orders_by_trade.get(trade_id, ()))
        return [o for o in rows if o.trade_id == trade_id and o.purpose == purpose]


class MemoryPositions:
    def __init__(self, t: MemoryTables) -> None:
        self.t = t

    async def add(self, position: PositionRecord) -> None:
        self.t.positions[position.trade_id] = _canonical_fields(position, _POSITION_MONEY)

    async def add_many(self, positions: Sequence[PositionRecord]) -> None:
        for position in positions:
            await self.add(position)

    async def for_user(self, user_id: int) -> list[PositionRecord]:
        rows = [p for p in self.t.positions.values() if p.user_id == user_id]
        if len(rows) > 1:
            rows.sort(key=lambda p: p.opened_at)  # stable: ties keep row order, as `ORDER BY opened_at, id`
        return rows

    async def for_users(self, user_ids: Sequence[int]) -> dict[int, list[PositionRecord]]:
        if not self.t.positions:
            return {}
        found = {u: await self.for_user(u) for u in user_ids}
        return {u: rows for u, rows in found.items() if rows}

    async def all(self) -> list[PositionRecord]:
        rows = list(self.t.positions.values())
        if len(rows) > 1:
            rows.sort(key=lambda p: p.user_id)
        return rows

    async def get(self, trade_id: int) -> PositionRecord | None:
        return self.t.positions.get(trade_id)

    async def set_protection(self, trade_id: int, oco_order_id: str | None, stop: Decimal, target: Decimal) -> None:
        row = self.t.positions.get(trade_id)
        if row is not None:
            self.t.positions[trade_id] = _canonical_fields(
                dataclasses.replace(row, oco_order_id=oco_order_id, stop_loss=stop, take_profit=target),
                _POSITION_MONEY,
            )

    async def set_protections(self, links: Sequence[tuple[int, str, Decimal, Decimal]]) -> None:
        for trade_id, list_id, stop, target in links:
            await self.set_protection(trade_id, list_id, stop, target)

    async def mark_closing(self, trade_id: int, reason: ExitReason) -> None:
        row = self.t.positions.get(trade_id)
        if row is not None and row.closing_reason is None:
            self.t.positions[trade_id] = dataclasses.replace(row, closing_reason=reason)

    async def remove(self, trade_id: int) -> bool:
        return self.t.positions.pop(trade_id, None) is not None


class MemoryPortfolios:
    def __init__(self, t: MemoryTables) -> None:
        self.t = t

    async def create(self, user_id: int, start_balance: Decimal, now: datetime) -> None:
        self.t.portfolios[user_id] = PortfolioStats(user_id, canonical(start_balance))

    async def get(self, user_id: int) -> PortfolioStats:
        found = self.t.portfolios.get(user_id)
        if found is None:
            raise LookupError(f"user {user_id} has no portfolio")
        return found

    async def record_close(self, user_id: int, profit_loss: Decimal, fees: Decimal, now: datetime) -> None:
        row = await self.get(user_id)
        won = profit_loss > 0
        self.t.portfolios[user_id] = dataclasses.replace(
            row, total_trades=row.total_trades + 1, winning_trades=row.winning_trades + int(won),
            losing_trades=row.losing_trades + int(not won),
            total_realized_pnl=canonical(row.total_realized_pnl + profit_loss),
            total_fees=canonical(row.total_fees + fees),
        )


NOTHING_CARRIED = Remainder()


class MemoryDust:
    def __init__(self, t: MemoryTables) -> None:
        self.t = t

    async def get(self, user_id: int, symbol: str) -> Remainder:
        return self.t.dust.get((user_id, symbol), NOTHING_CARRIED)

    async def set(self, user_id: int, symbol: str, remainder: Remainder) -> None:
        self.t.dust[(user_id, symbol)] = Remainder(canonical(remainder.amount), canonical(remainder.cost))

    async def get_many(self, keys: Sequence[tuple[int, str]]) -> dict[tuple[int, str], Remainder]:
        return {k: self.t.dust.get(k, NOTHING_CARRIED) for k in keys}

    async def set_many(self, remainders: Mapping[tuple[int, str], Remainder]) -> None:
        for (user_id, symbol), remainder in remainders.items():
            await self.set(user_id, symbol, remainder)


class MemoryAnalyses:
    def __init__(self, t: MemoryTables) -> None:
        self.t = t

    async def add(self, record: AnalysisRecord) -> int:
        self.t.analysis_count += 1
        if self.t.keep_analyses:
            self.t.analyses.append(dataclasses.replace(record, id=self.t.analysis_count))
        return self.t.analysis_count

    async def add_decisions(self, decisions: Sequence[DecisionRecord]) -> None:
        if self.t.keep_analyses:
            self.t.decisions.extend(AnalysisDecisionRow(d.analysis_id, d.user_id, d.decision, d.reasons, d.created_at,
                                                        d.trade_id) for d in decisions)

    async def add_tallies(self, tallies: Sequence[DecisionTally]) -> None:
        counts = self.t.decision_counts
        for tally in tallies:
            if tally.reason and tally.reason != PROFILE_NOTE:  # an entry's tally names no rule
                key = (str(tally.decision), tally.reason)  # str() of a StrEnum is its value, without .value's cost
                counts[key] = counts.get(key, 0) + tally.count
        if self.t.keep_analyses:
            self.t.tallies.extend(tallies)

    async def open_spans(self, user_ids: Sequence[int]) -> dict[int, DecisionSpan]:
        wanted = set(user_ids)
        return {s.user_id: s for s in self.t.spans if s.user_id in wanted and s.last_at is None}

    async def close_spans(self, ends: Sequence[tuple[int, datetime]]) -> None:
        last = dict(ends)
        self.t.spans = [dataclasses.replace(s, last_at=last[s.id]) if s.id in last else s for s in self.t.spans]

    async def add_spans(self, spans: Sequence[DecisionSpan]) -> None:
        if self.t.keep_analyses:
            first = len(self.t.spans) + 1
            self.t.spans.extend(dataclasses.replace(s, id=first + i) for i, s in enumerate(spans))

    async def latest_time(self) -> datetime | None:
        return max((a.created_at for a in self.t.analyses), default=None)


class MemoryEvents:
    def __init__(self, t: MemoryTables) -> None:
        self.t = t

    async def add(self, event: EventRecord) -> EventRecord:
        stored = dataclasses.replace(event, id=len(self.t.events) + 1)
        self.t.events.append(stored)
        return stored

    async def add_many(self, events: Sequence[EventRecord]) -> list[EventRecord]:
        return [await self.add(e) for e in events]


class MemoryUnitOfWork:
    """The repositories the engine uses, over shared tables. Writes apply at once: the backtest is one process
    and one task, and every engine block commits what it wrote, so there is nothing to roll back."""

    def __init__(self, tables: MemoryTables) -> None:
        self.configs = MemoryConfigs(tables)
        self.trades = MemoryTrades(tables)
        self.orders = MemoryOrders(tables)
        self.positions = MemoryPositions(tables)
        self.portfolios = MemoryPortfolios(tables)
        self.dust = MemoryDust(tables)
        self.analyses = MemoryAnalyses(tables)
        self.events = MemoryEvents(tables)

    async def commit(self) -> None:
        return None

    async def rollback(self) -> None:
        return None


class _Session:
    """`async with` over the one unit of work (a plain class: a generator-based context manager costs several
    microseconds per block, and a cycle opens about ten)."""

    __slots__ = ("_uow",)

    def __init__(self, uow: MemoryUnitOfWork) -> None:
        self._uow = uow

    async def __aenter__(self) -> MemoryUnitOfWork:
        return self._uow

    async def __aexit__(self, *exc: object) -> None:
        return None


class MemoryStore:
    """The unit-of-work factory: `async with store() as uow:` as with app.repositories.UnitOfWorkFactory."""

    def __init__(self, tables: MemoryTables | None = None) -> None:
        self.tables = tables or MemoryTables()
        self._uow = MemoryUnitOfWork(self.tables)
        self._session = _Session(self._uow)

    def __call__(self) -> _Session:
        return self._session

    def nothing_open(self) -> bool:
        """No position and no entry without its trade: what reconciliation and the exit checks would act on."""
        return not self.tables.positions and not self.tables.unbooked_entries

    def all_trades(self) -> list[TradeRecord]:
        return self._uow.trades.all()

    async def publish(self, user_id: int, type_: str, time: datetime, data: dict[str, Any]) -> EventRecord:
        """What the WebSocket manager does live, minus the socket: store the event (rejections are only counted,
        they come every cycle)."""
        counts = self.tables.event_counts
        counts[type_] = counts.get(type_, 0) + 1
        event = EventRecord(user_id, type_, time, data)
        if type_ != "signal_rejected" or self.tables.keep_analyses:
            event = await self._uow.events.add(event)
        return event

    async def publish_many(self, events: Sequence[EventRecord]) -> list[EventRecord]:
        return [await self.publish(e.user_id, e.type, e.time, e.data) for e in events]
