"""The simulated exchange's account state, kept as JSON so a paper account survives a restart."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import SimAccount


class SimAccountRepository:
    """Persists the simulated exchange's account state as JSON."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def load(self, account_id: str) -> dict[str, Any] | None:
        row = await self.session.get(SimAccount, account_id)
        return json.loads(row.state) if row else None

    async def changed_at(self, account_id: str) -> datetime | None:
        """When the account was last saved (a cheap look at whether a copy read before is still the account)."""
        return await self.session.scalar(select(SimAccount.updated_at).where(SimAccount.account_id == account_id))

    async def balances(self, account_id: str) -> dict[str, list[str]] | None:
        """Only the account's balances (asset -> [free, locked] as decimal strings), picked out of the JSON by the
        database: an account keeps up to a thousand finished orders that a balance read does not need."""
        if self.session.get_bind().dialect.name == "sqlite":
            picked = func.json_extract(SimAccount.state, "$.balances")
        else:
            picked = func.json_extract_path_text(cast(SimAccount.state, JSON), "balances")
        text = await self.session.scalar(select(picked).where(SimAccount.account_id == account_id))
        return json.loads(text) if text is not None else None

    async def save(self, account_id: str, state: dict[str, Any], now: datetime) -> None:
        row = await self.session.get(SimAccount, account_id)
        if row is None:
            row = SimAccount(account_id=account_id)
            self.session.add(row)
        row.state, row.updated_at = json.dumps(state, sort_keys=True), now
