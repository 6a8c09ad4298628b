"""The logs: each analysis with the users' decisions on it, and the events the bot published per user."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.records import AnalysisRecord, EventRecord
from app.domain.values import Decision
from app.models import Analysis, AnalysisDecision, Event

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
