"""The simulated exchange's account state, kept as JSON so a paper account survives a restart."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, cast, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import SimAccount

ACCOUNTS_PER_QUERY = 500


class SimAccountRepository:
    """Persists the simulated exchange's account state as JSON, with a version that counts its saves (a cached state
    is current while its version is; `save_over` saves only over the version it read)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def load(self, account_id: str) -> dict[str, Any] | None:
        row = await self.session.get(SimAccount, account_id)
        return json.loads(row.state) if row else None

    async def version(self, account_id: str) -> int | None:
        """How many times the account was saved (a cheap look at whether a copy read before is still the account;
        two saves in one clock tick still differ)."""
        return await self.session.scalar(select(SimAccount.version).where(SimAccount.account_id == account_id))

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
            row = SimAccount(account_id=account_id, version=0)
            self.session.add(row)
        else:
            row.version += 1
        row.state, row.updated_at = json.dumps(state, sort_keys=True), now

    async def versions(self, account_ids: Sequence[str]) -> dict[str, int]:
        """The current version of each account that exists."""
        found: dict[str, int] = {}
        for start in range(0, len(account_ids), ACCOUNTS_PER_QUERY):
            part = account_ids[start:start + ACCOUNTS_PER_QUERY]
            rows = await self.session.execute(
                select(SimAccount.account_id, SimAccount.version).where(SimAccount.account_id.in_(part))
            )
            found.update((key, value) for key, value in rows)
        return found

    async def read(self, account_ids: Sequence[str]) -> dict[str, tuple[int, dict[str, Any]]]:
        """Each existing account's version and state."""
        found: dict[str, tuple[int, dict[str, Any]]] = {}
        for start in range(0, len(account_ids), ACCOUNTS_PER_QUERY):
            part = account_ids[start:start + ACCOUNTS_PER_QUERY]
            rows = await self.session.execute(
                select(SimAccount.account_id, SimAccount.version, SimAccount.state)
                .where(SimAccount.account_id.in_(part))
            )
            found.update((account_id, (version, json.loads(state))) for account_id, version, state in rows)
        return found

    async def save_over(self, account_id: str, state: dict[str, Any], version: int | None,
                        now: datetime) -> int | None:
        """Save the state over `version` (None: the account is new) and return the new version; None when another
        save came first (the caller reads the account again)."""
        text = json.dumps(state, sort_keys=True)
        if version is None:
            if await self.session.get(SimAccount, account_id) is not None:
                return None
            self.session.add(SimAccount(account_id=account_id, state=text, version=0, updated_at=now))
            await self.session.flush()
            return 0
        result = await self.session.execute(
            update(SimAccount).where(SimAccount.account_id == account_id, SimAccount.version == version)
            .values(state=text, version=version + 1, updated_at=now).execution_options(synchronize_session=False)
        )
        return version + 1 if getattr(result, "rowcount", 0) == 1 else None
