"""Paper accounts read once and kept: the states a process read, with the version each was saved at, so that a cycle
that asks an account a dozen questions reads it once, and a quiet account is never written."""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from app.venues.paper.accounts import SimAccountState


class StaleAccount(Exception):
    """Another process saved the account after this one read it: nothing was saved; read it again and redo the call
    (a paper account's call changes nothing outside the account, so redoing it is safe)."""


class VersionedAccounts(Protocol):
    """Where paper accounts persist (the sim_accounts table): each account's dict form and a version counting its
    saves."""

    async def versions(self, account_ids: Sequence[str]) -> dict[str, int]: ...

    async def read(self, account_ids: Sequence[str]) -> dict[str, tuple[int, dict[str, Any]]]: ...

    async def save_over(self, account_id: str, state: dict[str, Any], version: int | None) -> int | None:
        """Save over `version` (None: a new account); the new version, or None when another save came first."""
        ...


@dataclass(slots=True)
class _Copy:
    version: int
    state: SimAccountState


class CachedSimAccountStore:
    """A `SimAccountStore` that keeps the states it read (up to `capacity`, the least recently used dropped first).

    A copy is used once its version is known to be the stored one: outside a cycle that costs a one-column read per
    call; inside `cycle()` every copy is checked in one query when the cycle begins and trusted until it ends (the
    engine is the only writer while it leads; a process that raced it is caught by the save). A save goes over the
    version its state was read at and fails with StaleAccount if another process saved since: the copy is dropped
    and the caller reads again. Every change is saved at once, as before: a crash loses nothing saved.
    """

    def __init__(self, accounts: VersionedAccounts, capacity: int = 20_000) -> None:
        self._accounts = accounts
        self._capacity = capacity
        self._copies: OrderedDict[str, _Copy] = OrderedDict()
        self._current: set[str] | None = None  # inside a cycle: the copies checked against the store
        self._cycles = 0

    @contextlib.asynccontextmanager
    async def cycle(self) -> AsyncIterator[None]:
        """Inside, each account is read (or its copy checked) at most once."""
        if self._cycles == 0:
            self._current = await self._check(list(self._copies))
        self._cycles += 1
        try:
            yield
        finally:
            self._cycles -= 1
            if self._cycles == 0:
                self._current = None

    async def load(self, account_id: str) -> SimAccountState | None:
        copy = self._copies.get(account_id)
        if copy is not None and self._current is not None and account_id in self._current:
            self._copies.move_to_end(account_id)
            return copy.state
        if copy is not None and account_id in await self._check([account_id]):
            return copy.state
        found = (await self._accounts.read([account_id])).get(account_id)
        if found is None:
            return None
        version, data = found
        state = SimAccountState.from_dict(data)
        self._keep(account_id, _Copy(version, state))
        return state

    async def save(self, account_id: str, state: SimAccountState) -> None:
        copy = self._copies.pop(account_id, None)  # dropped until the save succeeds
        base = copy.version if copy is not None and copy.state is state else None
        version = await self._accounts.save_over(account_id, state.to_dict(), base)
        if version is None:
            raise StaleAccount(f"paper account {account_id} was saved by another process")
        self._keep(account_id, _Copy(version, state))

    def forget(self, account_id: str) -> None:
        """Drop the account's copy: the next load reads the stored row."""
        self._copies.pop(account_id, None)

    async def _check(self, account_ids: list[str]) -> set[str]:
        """The given copies that are current (those that are not are dropped)."""
        if not account_ids:
            return set()
        stored = await self._accounts.versions(account_ids)
        current = set()
        for account_id in account_ids:
            copy = self._copies.get(account_id)
            if copy is not None and stored.get(account_id) == copy.version:
                current.add(account_id)
                self._copies.move_to_end(account_id)
            else:
                self._copies.pop(account_id, None)
        return current

    def _keep(self, account_id: str, copy: _Copy) -> None:
        self._copies[account_id] = copy
        self._copies.move_to_end(account_id)
        if self._current is not None:
            self._current.add(account_id)
        while len(self._copies) > self._capacity:
            dropped, _ = self._copies.popitem(last=False)
            if self._current is not None:
                self._current.discard(dropped)
