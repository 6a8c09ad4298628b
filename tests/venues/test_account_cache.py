"""Paper accounts read once and kept: a cycle reads each account at most once, a call that changes nothing saves
nothing, and two processes on one database never overwrite each other's saves."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from app.config import Settings
from app.container import Container, paper_account_id
from app.domain.clock import SimulatedClock
from app.venues.paper.account_cache import CachedSimAccountStore, StaleAccount
from app.venues.paper.accounts import SimAccountState

NOW = datetime(2025, 10, 1, 12, tzinfo=UTC)


class CountingAccounts:
    """Versioned persistence in memory that counts what it is asked (the port the database implements)."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[int, dict[str, Any]]] = {}
        self.calls: Counter[str] = Counter()

    async def versions(self, account_ids: Sequence[str]) -> dict[str, int]:
        self.calls["versions"] += 1
        return {a: self.rows[a][0] for a in account_ids if a in self.rows}

    async def read(self, account_ids: Sequence[str]) -> dict[str, tuple[int, dict[str, Any]]]:
        self.calls["read"] += 1
        return {a: self.rows[a] for a in account_ids if a in self.rows}

    async def save_over(self, account_id: str, state: dict[str, Any], version: int | None) -> int | None:
        self.calls["save"] += 1
        current = self.rows.get(account_id)
        if (current[0] if current else None) != version:
            return None
        self.rows[account_id] = ((version or 0) + 1 if current else 0, state)
        return self.rows[account_id][0]


def _funded(usdt: str) -> dict[str, Any]:
    state = SimAccountState()
    state.move("USDT", free_delta=Decimal(usdt))
    return state.to_dict()


async def test_a_cycle_reads_an_account_once_and_a_quiet_call_saves_nothing() -> None:
    accounts = CountingAccounts()
    accounts.rows["a"] = (0, _funded("100"))
    store = CachedSimAccountStore(accounts)
    first = await store.load("a")
    assert accounts.calls == {"read": 1}
    async with store.cycle():
        for _ in range(10):
            assert await store.load("a") is first
    assert accounts.calls == {"read": 1, "versions": 1}, "checked once when the cycle began, then trusted"
    assert await store.load("a") is first and accounts.calls["versions"] == 2, "outside a cycle: its version"


async def test_a_copy_another_process_saved_over_is_read_again_and_never_saved_over() -> None:
    accounts = CountingAccounts()
    accounts.rows["a"] = (0, _funded("100"))
    store = CachedSimAccountStore(accounts)
    mine = await store.load("a")
    assert mine is not None
    accounts.rows["a"] = (1, _funded("105"))  # another process saved
    mine.move("USDT", free_delta=Decimal("1"))
    with pytest.raises(StaleAccount):
        await store.save("a", mine)
    fresh = await store.load("a")
    assert fresh is not None and fresh.free("USDT") == Decimal("105") and accounts.rows["a"][0] == 1


async def test_two_processes_on_one_database_keep_both_deposits(settings: Settings) -> None:
    clock = SimulatedClock(NOW)
    engine, other = Container(settings, market_clock=clock), Container(settings, market_clock=clock)
    async with engine.uow() as uow:
        user = await uow.users.add("p", "p@example.com", "hash", NOW)
        await engine.open_paper_account(uow, user.id)
        await uow.commit()
    mine, theirs = await engine.exchanges.for_user(user.id), await other.exchanges.for_user(user.id)
    start = (await mine.get_account_balance("USDT")).free  # the engine's process now holds a copy
    async with engine.exchanges.cycle():  # type: ignore[attr-defined]
        await theirs.fund("USDT", Decimal("5"))  # saved by the other process during the engine's cycle
        await mine.fund("USDT", Decimal("1"))  # over a stale copy: refused, read again, redone
    stored = await other.exchanges.store.load(paper_account_id(user.id))  # type: ignore[attr-defined]
    for container in (engine, other):
        await container.db.dispose()
    assert stored is not None and stored.free("USDT") == start + 6
