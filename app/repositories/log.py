"""The logs: each analysis with the users' decisions on it, its tallies and the users' decision spans, and the
events the bot published per user."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import datetime, time
from typing import cast

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.records import AnalysisRecord, DecisionRecord, DecisionSpan, DecisionTally, EventRecord
from app.domain.values import OUTSIDE_HOURS, Decision, SignalType, already_holding_text, hold_text
from app.models import Analysis, AnalysisDecision, Event, TradingConfigRow
from app.models import DecisionSpan as SpanRow
from app.models import DecisionTally as TallyRow
from app.repositories.trading import chunks

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


def _hhmm(value: time | None) -> str | None:
    return value.strftime("%H:%M") if value is not None else None


def _time(value: str | None) -> time | None:
    return time.fromisoformat(value) if value is not None else None


def _span(row: SpanRow) -> DecisionSpan:
    return DecisionSpan(row.user_id, row.analyzer, tuple(s for s in row.symbols.split(",") if s),
                        _time(row.hours_start), _time(row.hours_end), row.first_at, row.last_at, row.id)


def _in_hours(start: time | None, end: time | None, at: datetime) -> bool:
    """TradingConfig.in_trading_hours for the hours a span kept."""
    if start is None or end is None:
        return True
    now = at.time()
    return start <= now < end if start <= end else (now >= start or now < end)


def _skip_seen(row: Analysis, span: SpanRow) -> AnalysisRecord:
    """An analysis inside the user's span without a row of theirs: a skip the engine only tallied, in the order its
    pre-checks ask: outside their trading hours, a hold, or (a buy or a sell) a symbol they held."""
    if not _in_hours(_time(span.hours_start), _time(span.hours_end), row.created_at):
        reason = OUTSIDE_HOURS
    elif row.signal == SignalType.HOLD.value:
        reason = hold_text(row.reasoning)
    else:
        reason = already_holding_text(row.symbol)
    record = _analysis(row)
    record.decision, record.reasons = Decision.SKIPPED, (reason,)
    return record


class AnalysisRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, record: AnalysisRecord) -> int:
        row = Analysis(**{name: getattr(record, name) for name in _ANALYSIS_FIELDS})
        self.session.add(row)
        await self.session.flush()
        return row.id

    async def add_decisions(self, decisions: Sequence[DecisionRecord]) -> None:
        if decisions:
            await self.session.execute(insert(AnalysisDecision), [
                {"analysis_id": d.analysis_id, "user_id": d.user_id, "decision": d.decision.value,
                 "reasons": json.dumps(list(d.reasons)), "trade_id": d.trade_id, "created_at": d.created_at}
                for d in decisions
            ])

    async def add_tallies(self, tallies: Sequence[DecisionTally]) -> None:
        if tallies:
            await self.session.execute(insert(TallyRow), [
                {"analysis_id": t.analysis_id, "decision": t.decision.value, "reason": t.reason, "count": t.count}
                for t in tallies
            ])

    async def tallies(self, analysis_id: int) -> dict[tuple[Decision, str], int]:
        """An analysis's outcomes over every user: (decision, reason code) -> count, summed over its rows."""
        rows = await self.session.execute(
            select(TallyRow.decision, TallyRow.reason, func.sum(TallyRow.count))
            .where(TallyRow.analysis_id == analysis_id).group_by(TallyRow.decision, TallyRow.reason)
        )
        return {(Decision(decision), reason): int(count) for decision, reason, count in rows}

    async def open_spans(self, user_ids: Sequence[int]) -> dict[int, DecisionSpan]:
        found: dict[int, DecisionSpan] = {}
        for part in chunks(user_ids):
            rows = await self.session.scalars(
                select(SpanRow).where(SpanRow.user_id.in_(part), SpanRow.last_at.is_(None)).order_by(SpanRow.id)
            )
            found.update((row.user_id, _span(row)) for row in rows)
        return found

    async def close_spans(self, ends: Sequence[tuple[int, datetime]]) -> None:
        if ends:
            table = cast(Table, SpanRow.__table__)
            await self.session.execute(update(table).where(table.c.id == bindparam("span")).values(last_at=bindparam("end")),
                                       [{"span": span_id, "end": end} for span_id, end in ends])

    async def add_spans(self, spans: Sequence[DecisionSpan]) -> None:
        if spans:
            await self.session.execute(insert(SpanRow), [
                {"user_id": s.user_id, "analyzer": s.analyzer, "symbols": f",{','.join(s.symbols)},",
                 "hours_start": _hhmm(s.hours_start), "hours_end": _hhmm(s.hours_end), "first_at": s.first_at,
                 "last_at": s.last_at}
                for s in spans
            ])

    async def spans(self, user_id: int) -> list[DecisionSpan]:
        rows = await self.session.scalars(select(SpanRow).where(SpanRow.user_id == user_id).order_by(SpanRow.id))
        return [_span(r) for r in rows]

    async def for_user(self, user_id: int, symbol: str | None = None, limit: int = 50) -> list[AnalysisRecord]:
        """The user's decision log, newest first: their own rows (where something happened to them) and the skips
        the engine only tallied, which are the analysis rows inside their decision spans without a row of theirs."""
        own = await self._own_decisions(user_id, symbol, limit)
        decided = {r.id for r in own}
        skips = [r for r in await self._analyses_seen(user_id, symbol, limit) if r.id not in decided]
        merged = sorted([*own, *skips], key=lambda r: (r.created_at, r.id or 0), reverse=True)
        return merged[:limit]

    async def _own_decisions(self, user_id: int, symbol: str | None, limit: int) -> list[AnalysisRecord]:
        query = (
            select(Analysis, AnalysisDecision)
            .join(AnalysisDecision, AnalysisDecision.analysis_id == Analysis.id)
            .where(AnalysisDecision.user_id == user_id)
        )
        if symbol:
            query = query.where(Analysis.symbol == symbol)
        rows = (await self.session.execute(query.order_by(Analysis.created_at.desc(), Analysis.id.desc()).limit(limit))).all()
        return [_analysis(a, d) for a, d in rows]

    async def _analyses_seen(self, user_id: int, symbol: str | None, limit: int) -> list[AnalysisRecord]:
        """The newest analyses the user was decided on (inside their spans), each as the skip it was unless they
        have a row of their own for it."""
        ends = func.coalesce(SpanRow.last_at, select(TradingConfigRow.last_analyzed_at)
                             .where(TradingConfigRow.user_id == user_id).scalar_subquery())
        query = (
            select(Analysis, SpanRow)
            .join(SpanRow, (SpanRow.user_id == user_id) & (SpanRow.analyzer == Analysis.analyzer)
                  & (Analysis.created_at >= SpanRow.first_at) & (Analysis.created_at <= ends)
                  & SpanRow.symbols.contains("," + Analysis.symbol + ","))
        )
        if symbol:
            query = query.where(Analysis.symbol == symbol)
        rows = (await self.session.execute(query.order_by(Analysis.created_at.desc(), Analysis.id.desc()).limit(limit))).all()
        return [_skip_seen(a, span) for a, span in rows]

    async def decided(self, analysis_id: int, user_id: int) -> AnalysisRecord | None:
        """One analysis with the user's own decision on it (none if the user has no row for it)."""
        found = (await self.session.execute(
            select(Analysis, AnalysisDecision).outerjoin(
                AnalysisDecision, (AnalysisDecision.analysis_id == Analysis.id) & (AnalysisDecision.user_id == user_id))
            .where(Analysis.id == analysis_id).order_by(AnalysisDecision.id).limit(1)
        )).first()
        return _analysis(found[0], found[1]) if found is not None else None

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

    async def add_many(self, events: Sequence[EventRecord]) -> list[EventRecord]:
        """Many events in one statement, each returned with its id, in order."""
        if not events:
            return []
        rows = [{"user_id": e.user_id, "type": e.type, "time": e.time, "data": json.dumps(e.data, default=str)}
                for e in events]
        if self.session.get_bind().dialect.name == "sqlite":
            # SQLite cannot return a batch's ids in order (SQLAlchemy sends one INSERT per row for that); its one
            # writer at a time gives the batch the next ids in order, read back in the same transaction
            await self.session.execute(insert(Event), rows)
            newest = await self.session.scalars(select(Event.id).order_by(Event.id.desc()).limit(len(rows)))
            ids = sorted(newest)
        else:
            ids = list(await self.session.scalars(insert(Event).returning(Event.id, sort_by_parameter_order=True), rows))
        return [EventRecord(e.user_id, e.type, e.time, e.data, event_id) for e, event_id in zip(events, ids, strict=True)]

    async def for_user(self, user_id: int, limit: int = 100) -> list[EventRecord]:
        rows = await self.session.scalars(
            select(Event).where(Event.user_id == user_id).order_by(Event.id.desc()).limit(limit)
        )
        return [EventRecord(r.user_id, r.type, r.time, json.loads(r.data), r.id) for r in rows]

    async def page(self, user_id: int, type_: str | None, since: datetime | None, until: datetime | None,
                   before_id: int | None, limit: int) -> list[EventRecord]:
        """A user's events newest first (by id), of one type and in [since, until) if asked, below `before_id`."""
        query = select(Event).where(Event.user_id == user_id)
        if type_ is not None:
            query = query.where(Event.type == type_)
        if since is not None:
            query = query.where(Event.time >= since)
        if until is not None:
            query = query.where(Event.time < until)
        if before_id is not None:
            query = query.where(Event.id < before_id)
        rows = await self.session.scalars(query.order_by(Event.id.desc()).limit(limit))
        return [EventRecord(r.user_id, r.type, r.time, json.loads(r.data), r.id) for r in rows]

    async def latest_id(self) -> int:
        return await self.session.scalar(select(func.max(Event.id))) or 0

    async def ids_after(self, event_id: int) -> list[tuple[int, int, str]]:
        """(id, user id, type) of every event stored past `event_id`."""
        rows = await self.session.execute(select(Event.id, Event.user_id, Event.type).where(Event.id > event_id))
        return [(event, user, type_) for event, user, type_ in rows.all()]

    async def after(self, event_id: int, user_ids: Collection[int], limit: int = 500) -> list[EventRecord]:
        """The given users' events stored past `event_id`, oldest first."""
        rows = await self.session.scalars(
            select(Event).where(Event.id > event_id, Event.user_id.in_(user_ids)).order_by(Event.id).limit(limit)
        )
        return [EventRecord(r.user_id, r.type, r.time, json.loads(r.data), r.id) for r in rows]
