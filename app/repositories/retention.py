"""Retention: analyses, users' decision rows, decision spans and events older than their settings are deleted, a
batch of rows per statement and commit; an analysis a trade or an order names is kept, and so is the decision row
of an entry."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Delete, delete, exists, select
from sqlalchemy.orm import InstrumentedAttribute

from app.models import Analysis, AnalysisDecision, DecisionSpan, Event, OrderRow, Trade
from app.repositories.unit_of_work import UnitOfWorkFactory


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Days each kind of row is kept (0: forever), and how many rows one statement deletes."""

    analyses_days: int = 90
    decisions_days: int = 90
    events_days: int = 30
    batch_rows: int = 5000


class RetentionPruner:
    """Deletes what the policy no longer keeps, in batches (each its own short transaction, the event loop free
    between them), so that pruning a day of 10,000 users never holds the database for long."""

    def __init__(self, uow: UnitOfWorkFactory, policy: RetentionPolicy) -> None:
        self.uow, self.policy = uow, policy

    async def prune(self, now: datetime) -> dict[str, int]:
        """Rows deleted per table."""
        p, deleted = self.policy, {}
        if p.decisions_days:
            cutoff = now - timedelta(days=p.decisions_days)
            deleted["analysis_decisions"] = await self._delete(
                AnalysisDecision.id, (AnalysisDecision.created_at < cutoff) & AnalysisDecision.trade_id.is_(None))
        if p.analyses_days:
            cutoff = now - timedelta(days=p.analyses_days)
            named = exists(select(Trade.id).where(Trade.analysis_id == Analysis.id)) | \
                exists(select(OrderRow.id).where(OrderRow.analysis_id == Analysis.id))
            # their tallies and users' rows go with them (ON DELETE CASCADE)
            deleted["analyses"] = await self._delete(Analysis.id, (Analysis.created_at < cutoff) & ~named)
            deleted["decision_spans"] = await self._delete(DecisionSpan.id, DecisionSpan.last_at < cutoff)  # closed
        if p.events_days:
            deleted["events"] = await self._delete(Event.id, Event.time < now - timedelta(days=p.events_days))
        return deleted

    async def _delete(self, key: InstrumentedAttribute[int], condition: ColumnElement[bool]) -> int:
        total = 0
        while True:
            batch = select(key).where(condition).order_by(key).limit(self.policy.batch_rows).scalar_subquery()
            statement: Delete = delete(key.class_).where(key.in_(batch))
            async with self.uow() as uow:
                result = await uow.session.execute(statement.execution_options(synchronize_session=False))
                await uow.commit()
            count = int(getattr(result, "rowcount", 0) or 0)
            total += count
            if count < self.policy.batch_rows:
                return total
            await asyncio.sleep(0)  # let the API and the loop run between batches
