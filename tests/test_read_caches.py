"""What the API keeps briefly: users, live balances (with an explicit refresh) and live prices, each for its TTL."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from prometheus_client import CollectorRegistry

from app.domain.clock import SimulatedClock
from app.domain.values import Balance
from app.process_tuning import GcPauses
from app.read_caches import LiveBalances, PriceBoard, TtlCache, paper_balances
from app.repositories import UnitOfWork

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


class FakeVenue:
    """An account and a market at a venue: counts the requests it answers."""

    def __init__(self) -> None:
        self.balance_requests = 0
        self.price_requests = 0
        self.usdt = Decimal("100")

    async def get_balances(self) -> list[Balance]:
        self.balance_requests += 1
        return [Balance("USDT", self.usdt)]

    async def get_symbol_price(self, symbol: str) -> Decimal:
        self.price_requests += 1
        return Decimal("65000.5")


class FakeAccounts:
    def __init__(self, venue: FakeVenue) -> None:
        self.venue = venue

    async def for_user(self, user_id: int, uow: UnitOfWork | None = None) -> FakeVenue:
        return self.venue


class EndsReads:
    """The request's unit of work: only whether its reads were ended before the venue was asked."""

    def __init__(self) -> None:
        self.rollbacks = 0

    async def rollback(self) -> None:
        self.rollbacks += 1


def test_a_cache_keeps_values_for_its_ttl_and_drops_the_least_recently_used() -> None:
    clock = SimulatedClock(T0)
    cache: TtlCache[int, str] = TtlCache(clock, ttl_s=10, max_items=2)
    cache.put(1, "one")
    cache.put(2, "two")
    clock.advance(timedelta(seconds=9))
    assert cache.get(1) == "one"
    cache.put(3, "three")  # 2 is the least recently used now
    assert cache.get(2) is None and cache.get(3) == "three"
    clock.advance(timedelta(seconds=1))
    assert cache.get(1) is None, "expired at its TTL"
    off: TtlCache[int, str] = TtlCache(clock, ttl_s=0)
    off.put(1, "one")
    assert off.get(1) is None


async def test_live_balances_are_reused_for_the_ttl_and_asked_again_on_refresh() -> None:
    clock, venue = SimulatedClock(T0), FakeVenue()
    balances = LiveBalances(FakeAccounts(venue), TtlCache(clock, ttl_s=10))  # type: ignore[arg-type]
    uow = EndsReads()
    assert await balances.read(uow, 7) == [Balance("USDT", Decimal("100"))]  # type: ignore[arg-type]
    venue.usdt = Decimal("90")
    assert await balances.read(uow, 7) == [Balance("USDT", Decimal("100"))]  # type: ignore[arg-type]
    assert venue.balance_requests == 1
    assert await balances.read(uow, 7, refresh=True) == [Balance("USDT", Decimal("90"))]  # type: ignore[arg-type]
    assert venue.balance_requests == 2
    clock.advance(timedelta(seconds=10))
    await balances.read(uow, 7)  # type: ignore[arg-type]
    assert venue.balance_requests == 3
    assert uow.rollbacks == 3, "no connection is held while the venue answers"


async def test_prices_are_reused_for_the_ttl() -> None:
    clock, venue = SimulatedClock(T0), FakeVenue()
    board = PriceBoard(lambda: venue, TtlCache(clock, ttl_s=2))  # type: ignore[arg-type,return-value]
    assert await board.prices(["BTCUSDT", "BTCUSDT"]) == {"BTCUSDT": Decimal("65000.5")}
    await board.price("BTCUSDT")
    assert venue.price_requests == 1
    clock.advance(timedelta(seconds=2))
    await board.price("BTCUSDT")
    assert venue.price_requests == 2


def test_paper_balances_come_from_the_stored_form_without_empty_assets() -> None:
    stored = {"USDT": ["9000.5", "999.5"], "BTC": ["0.01", "0"], "ETH": ["0", "0"]}
    assert paper_balances(stored) == [Balance("BTC", Decimal("0.01")),
                                      Balance("USDT", Decimal("9000.5"), Decimal("999.5"))]
    assert paper_balances(None) == []


def test_tuning_freezes_the_start_up_heap_and_sets_the_young_threshold() -> None:
    """In a process of its own: a frozen heap is never collected again, which a test run must not suffer."""
    code = ("import gc, app.container; from app.process_tuning import tune_gc; frozen = tune_gc(True, 12345); "
            "assert gc.get_threshold()[0] == 12345, gc.get_threshold(); assert frozen > 50_000, frozen; "
            "assert gc.get_freeze_count() == frozen; print(frozen)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_gc_pauses_are_measured_by_generation() -> None:
    registry = CollectorRegistry()
    pauses = GcPauses(registry)
    pauses.install()
    try:
        import gc

        gc.collect()
    finally:
        pauses.remove()
    assert registry.get_sample_value("trdbot_gc_pause_seconds_count", {"generation": "2"}) == 1
