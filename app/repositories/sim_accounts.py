"""The simulated exchange's account state, kept as JSON so a paper account survives a restart."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.models import SimAccount


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
