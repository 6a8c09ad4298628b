"""What the API reads on most requests, kept briefly in each process: the users tokens name, live balances, prices."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Generic, Protocol, TypeVar

from app.domain.clock import Clock
from app.domain.ports import ExchangeAdapter
from app.domain.records import UserAccount
from app.domain.values import Balance
from app.repositories import UnitOfWork, UnitOfWorkFactory

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Values kept `ttl_s` seconds of the clock, the least recently used dropped beyond `max_items` (0 s: off)."""

    def __init__(self, clock: Clock, ttl_s: float, max_items: int = 10_000) -> None:
        self.clock, self.ttl, self.max_items = clock, timedelta(seconds=ttl_s), max_items
        self._items: OrderedDict[K, tuple[datetime, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        found = self._items.get(key)
        if found is None:
            return None
        expires_at, value = found
        if self.clock.now() >= expires_at:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        if not self.ttl:
            return
        self._items[key] = (self.clock.now() + self.ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def forget(self, key: K) -> None:
        self._items.pop(key, None)


class CheckedCache(Generic[K, V]):
    """Values each kept with the fingerprint of what they were made from: one is served while the fingerprint the
    caller reads now is the same and it is younger than `ttl_s` (a bound on anything the fingerprint misses)."""

    def __init__(self, clock: Clock, ttl_s: float, max_items: int = 5_000) -> None:
        self._items: TtlCache[K, tuple[object, V]] = TtlCache(clock, ttl_s, max_items)

    def get(self, key: K, fingerprint: object) -> V | None:
        found = self._items.get(key)
        return found[1] if found is not None and found[0] == fingerprint else None

    def put(self, key: K, fingerprint: object, value: V) -> None:
        self._items.put(key, (fingerprint, value))


class UserDirectory:
    """The user a token names, read in a unit of work of its own that ends before the route starts (so a request
    never holds two connections), then kept USER_CACHE_SECONDS: most requests need no query for it at all."""

    def __init__(self, uow: UnitOfWorkFactory, cache: TtlCache[int, UserAccount]) -> None:
        self.uow, self.cache = uow, cache

    async def get(self, user_id: int) -> UserAccount | None:
        user = self.cache.get(user_id)
        if user is None:
            async with self.uow() as uow:
                user = await uow.users.get(user_id)
            if user is not None:
                self.cache.put(user_id, user)
        return user

    def forget(self, user_id: int) -> None:
        """The user's row changed here (its mode): the next request reads it again."""
        self.cache.forget(user_id)


def paper_balances(stored: Mapping[str, list[str]] | None) -> list[Balance]:
    """A paper account's balances as the books hold them (asset -> [free, locked]), the empty ones left out."""
    balances = (Balance(asset, Decimal(free), Decimal(locked)) for asset, (free, locked) in (stored or {}).items())
    return sorted((b for b in balances if b.total != 0), key=lambda b: b.asset)


class LiveAccounts(Protocol):
    async def for_user(self, user_id: int, uow: UnitOfWork | None = None) -> ExchangeAdapter: ...


class LiveBalances:
    """A live account's balances from the venue, kept LIVE_BALANCE_CACHE_SECONDS unless a refresh is asked for;
    the request's connection goes back to the pool while the venue answers."""

    def __init__(self, accounts: LiveAccounts, cache: TtlCache[int, list[Balance]]) -> None:
        self.accounts, self.cache = accounts, cache

    async def read(self, uow: UnitOfWork, user_id: int, refresh: bool = False) -> list[Balance]:
        cached = None if refresh else self.cache.get(user_id)
        if cached is not None:
            return cached
        exchange = await self.accounts.for_user(user_id, uow)
        await uow.rollback()  # only reads so far: end them rather than hold a connection through a venue call
        balances = await exchange.get_balances()
        self.cache.put(user_id, balances)
        return balances

    def forget(self, user_id: int) -> None:
        self.cache.forget(user_id)


class PriceBoard:
    """Last prices from the market-data venue, each kept PRICE_CACHE_SECONDS (a live venue costs a request per
    symbol; the replayed market answers from memory and is asked every time)."""

    def __init__(self, market: Callable[[], ExchangeAdapter], cache: TtlCache[str, Decimal]) -> None:
        self.market, self.cache = market, cache

    async def prices(self, symbols: Iterable[str]) -> dict[str, Decimal]:
        return {symbol: await self.price(symbol) for symbol in symbols}

    async def price(self, symbol: str) -> Decimal:
        price = self.cache.get(symbol)
        if price is None:
            price = await self.market().get_symbol_price(symbol)
            self.cache.put(symbol, price)
        return price
