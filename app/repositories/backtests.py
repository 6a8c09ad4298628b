"""Backtests started through the API: a user's runs, and the runner's queue (claim, progress, outcome)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.records import BacktestRun, BacktestStatus
from app.models import BacktestRow

_STATUSES = {status.value: status for status in BacktestStatus}
WAITING = (BacktestStatus.QUEUED.value, BacktestStatus.RUNNING.value)


def _run(row: BacktestRow) -> BacktestRun:
    return BacktestRun(
        id=row.id, user_id=row.user_id, status=_STATUSES[row.status],
        symbols=tuple(s for s in row.symbols.split(",") if s), start=row.start, end=row.end, balance=row.balance,
        config=json.loads(row.config), created_at=row.created_at, progress=row.progress, started_at=row.started_at,
        finished_at=row.finished_at, summary=json.loads(row.summary) if row.summary else None, error=row.error,
    )


class BacktestRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, run: BacktestRun) -> BacktestRun:
        row = BacktestRow(user_id=run.user_id, status=run.status.value, symbols=",".join(run.symbols),
                          start=run.start, end=run.end, balance=run.balance, config=json.dumps(run.config),
                          progress=0.0, created_at=run.created_at)
        self.session.add(row)
        await self.session.flush()
        return _run(row)

    async def get(self, user_id: int, run_id: int) -> BacktestRun | None:
        row = await self.session.get(BacktestRow, run_id)
        return _run(row) if row is not None and row.user_id == user_id else None

    async def for_user(self, user_id: int, limit: int = 100) -> list[BacktestRun]:
        rows = await self.session.scalars(select(BacktestRow).where(BacktestRow.user_id == user_id)
                                          .order_by(BacktestRow.id.desc()).limit(limit))
        return [_run(r) for r in rows]

    async def waiting(self, user_id: int) -> int:
        """The user's runs queued or running."""
        query = select(func.count()).where(BacktestRow.user_id == user_id, BacktestRow.status.in_(WAITING))
        return await self.session.scalar(query) or 0

    async def delete(self, user_id: int, run_id: int) -> bool:
        result = await self.session.execute(delete(BacktestRow).where(BacktestRow.id == run_id,
                                                                      BacktestRow.user_id == user_id))
        return bool(getattr(result, "rowcount", 0))

    async def claim_next(self, now: datetime) -> BacktestRun | None:
        """The oldest queued run, now running (a conditional UPDATE: a run is claimed once, by one runner)."""
        run_id = await self.session.scalar(select(BacktestRow.id).where(BacktestRow.status == BacktestStatus.QUEUED.value)
                                           .order_by(BacktestRow.id).limit(1))
        if run_id is None:
            return None
        claimed = await self.session.execute(
            update(BacktestRow).where(BacktestRow.id == run_id, BacktestRow.status == BacktestStatus.QUEUED.value)
            .values(status=BacktestStatus.RUNNING.value, started_at=now, progress=0.0)
        )
        if not getattr(claimed, "rowcount", 0):
            return None
        row = await self.session.get(BacktestRow, run_id, populate_existing=True)
        return _run(row) if row is not None else None

    async def set_progress(self, run_id: int, progress: float) -> bool:
        """False once the run's row is gone (its user deleted it): the runner stops the run."""
        result = await self.session.execute(update(BacktestRow).where(BacktestRow.id == run_id)
                                            .values(progress=progress))
        return bool(getattr(result, "rowcount", 0))

    async def finish(self, run_id: int, status: BacktestStatus, now: datetime, summary: dict[str, Any] | None = None,
                     error: str | None = None) -> None:
        values: dict[str, Any] = {"status": status.value, "finished_at": now, "error": error,
                                  "summary": json.dumps(summary) if summary is not None else None}
        if status == BacktestStatus.DONE:
            values["progress"] = 1.0
        await self.session.execute(update(BacktestRow).where(BacktestRow.id == run_id).values(**values))

    async def fail_running(self, now: datetime, error: str) -> int:
        """Runs left `running` by a process that is gone: failed with `error`; how many."""
        result = await self.session.execute(
            update(BacktestRow).where(BacktestRow.status == BacktestStatus.RUNNING.value)
            .values(status=BacktestStatus.FAILED.value, finished_at=now, error=error)
        )
        return int(getattr(result, "rowcount", 0) or 0)
