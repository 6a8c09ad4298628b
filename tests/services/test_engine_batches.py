"""Many users in one cycle (issue 19): a quiet user costs no SQL statement of their own, market data and analyst
calls follow the symbols, not the users, and a user's own decision row exists only where something happened."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, func, select

from app.config import Settings
from app.container import Container
from app.domain.clock import SimulatedClock
from app.domain.values import Decision
from app.models import AnalysisDecision, DecisionSpan, DecisionTally
from tests.conftest import _delete_rows

QUIET_START = datetime(2025, 10, 1, 1, 10, tzinfo=UTC)  # holds on every symbol until every user buys at 01:30
ENTRY_CYCLE = datetime(2025, 10, 1, 1, 30, tzinfo=UTC)
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")


async def _population(settings: Settings, users: int) -> tuple[Container, SimulatedClock, list[int]]:
    clock = SimulatedClock(QUIET_START)
    container = Container(settings.model_copy(update={"default_symbols": SYMBOLS}), market_clock=clock)
    ids = []
    async with container.uow() as uow:
        for n in range(users):
            user = await uow.users.add(f"user{n}", f"user{n}@example.com", "hash", clock.now())
            await uow.configs.create(dataclasses.replace(container.default_config(user.id), is_active=True),
                                     clock.now())
            await uow.portfolios.create(user.id, settings.paper_start_balance, clock.now())
            await container.open_paper_account(uow, user.id)
            ids.append(user.id)
        await uow.commit()
    return container, clock, ids


@contextmanager
def _statements(container: Container) -> Iterator[list[str]]:
    """Every SQL statement the container's engine sends while inside (an executemany counts once)."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(container.db.engine.sync_engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(container.db.engine.sync_engine, "before_cursor_execute", note)


async def _cycle(container: Container, clock: SimulatedClock) -> None:
    clock.advance(timedelta(minutes=5))
    await container.bot.run_cycle(clock.now())


async def _quiet_cycle_statements(settings: Settings, users: int) -> list[str]:
    await _delete_rows(settings.database_url)
    container, clock, _ = await _population(settings, users)
    await _cycle(container, clock)  # the first cycle begins every user's decision span
    with _statements(container) as seen:
        await _cycle(container, clock)
    await container.db.dispose()
    return seen


async def test_quiet_users_cost_no_statement_of_their_own(settings: Settings) -> None:
    few, many = await _quiet_cycle_statements(settings, 5), await _quiet_cycle_statements(settings, 50)
    assert len(many) == len(few), "fifty quiet users cost what five do"
    assert len(many) <= 20, many
    assert not any("analysis_decisions" in s for s in many), "a hold is nobody's row"


async def test_market_data_and_analyst_calls_follow_the_symbols(settings: Settings) -> None:
    container, clock, _ = await _population(settings, 30)
    market, analyst = container.bot.analysis.market, container.bot.analysts["rules"]
    calls: Counter[str] = Counter()

    class CountingMarket:
        def __getattr__(self, name: str) -> Any:
            return getattr(market, name)

        async def get_klines(self, *args: Any) -> Any:
            calls["klines"] += 1
            return await market.get_klines(*args)

    class CountingAnalyst:
        name = analyst.name

        async def analyze(self, features: Any) -> Any:
            calls["analyst"] += 1
            return await analyst.analyze(features)

    container.bot.analysis.market = CountingMarket()  # type: ignore[assignment]
    container.bot.analysts = {"rules": CountingAnalyst()}  # type: ignore[dict-item]
    for _ in range(5):  # holds, then every user's entry at 01:30
        await _cycle(container, clock)
        assert calls == {"analyst": len(SYMBOLS), "klines": 3 * len(SYMBOLS)}, calls  # three timeframes each
        calls.clear()
    await container.db.dispose()


async def test_a_users_own_row_only_where_something_happened(settings: Settings) -> None:
    container, clock, ids = await _population(settings, 6)
    while clock.now() < ENTRY_CYCLE - timedelta(minutes=5):
        await _cycle(container, clock)
    async with container.uow() as uow:
        rows = await uow.session.scalar(select(func.count()).select_from(AnalysisDecision))
        tallies = (await uow.session.execute(select(DecisionTally.decision, DecisionTally.reason,
                                                    func.sum(DecisionTally.count))
                                             .group_by(DecisionTally.decision, DecisionTally.reason))).all()
        spans = (await uow.session.execute(select(DecisionSpan.user_id, DecisionSpan.first_at,
                                                  DecisionSpan.last_at))).all()
    cycles = 3
    assert rows == 0
    assert [tuple(t) for t in tallies] == [("skipped", "hold", cycles * len(SYMBOLS) * len(ids))]
    assert sorted(user for user, *_ in spans) == ids, "one span per user: its cycles in a row"
    assert {(first, last) for _, first, last in spans} == {(QUIET_START + timedelta(minutes=5), None)}, "still open"

    await _cycle(container, clock)  # every user buys
    async with container.uow() as uow:
        executed = await uow.session.scalar(select(func.count()).select_from(AnalysisDecision)
                                            .where(AnalysisDecision.decision == Decision.EXECUTED.value))
        rows = await uow.session.scalar(select(func.count()).select_from(AnalysisDecision))
    await _cycle(container, clock)  # the buy goes on: every user holds the symbol
    async with container.uow() as uow:
        held = await uow.session.scalar(select(func.count()).select_from(AnalysisDecision))
        seen = await uow.analyses.for_user(ids[0], limit=500)
    assert executed == len(ids)
    assert held == rows, "skipping a symbol the user holds is nobody's row"
    assert len(seen) == (cycles + 2) * len(SYMBOLS), "every analysis the user was decided on, holds included"
    assert Counter(r.decision for r in seen)[Decision.EXECUTED] == 1
    assert all(r.reasons and r.reasons[0].startswith("hold") for r in seen if r.signal == "hold")
    bought = next(r for r in seen if r.decision == Decision.EXECUTED)
    assert [r.reasons for r in seen if r.signal == "buy" and r.created_at > bought.created_at] == \
        [(f"already holding {bought.symbol}",)]
    await container.db.dispose()


async def test_positioned_users_read_their_paper_accounts_once_per_cycle(settings: Settings) -> None:
    """After the entry, a cycle that watches every position asks the database for the accounts' versions only:
    no account's state is read or written while nothing in it changed."""
    container, clock, _ = await _population(settings, 12)
    while clock.now() < ENTRY_CYCLE + timedelta(minutes=5):
        await _cycle(container, clock)
    with _statements(container) as seen:
        await _cycle(container, clock)
    accounts = [s for s in seen if "sim_accounts" in s]
    assert len(accounts) == 1 and "version" in accounts[0] and "state" not in accounts[0].split("FROM")[0], accounts
    assert len(seen) <= 25, seen
    await container.db.dispose()


async def test_the_log_shows_only_the_cycles_a_user_was_decided_in(settings: Settings) -> None:
    """With a rate limit of two cycles the user is decided every other cycle: their log has those cycles' analyses
    and none of the others', though no row of theirs was written."""
    slow = settings.model_copy(update={"user_rate_limit_seconds": 600})
    container, clock, ids = await _population(slow, 1)
    decided = []
    for _ in range(4):
        await _cycle(container, clock)
        async with container.uow() as uow:
            if (await uow.configs.analyzed_at(ids))[ids[0]] == clock.now():
                decided.append(clock.now())
    async with container.uow() as uow:
        seen = await uow.analyses.for_user(ids[0], limit=500)
        rows = await uow.session.scalar(select(func.count()).select_from(AnalysisDecision))
    await container.db.dispose()
    assert rows == 0 and decided == [QUIET_START + timedelta(minutes=m) for m in (5, 15)]
    assert sorted({r.created_at for r in seen}) == decided and len(seen) == len(decided) * len(SYMBOLS)


async def _entry_cycle_with(settings: Settings, in_doubt: set[str]) -> tuple[int, Counter[str]]:
    """One user with a daily limit of one entry, decided at the cycle where every symbol says buy, with `in_doubt`
    entries (sent, not booked: a batch redone after its worker died, or an order the exchange denied knowing)."""
    await _delete_rows(settings.database_url)
    container, clock, (user_id,) = await _population(settings.model_copy(update={"daily_trade_limit": 1,
                                                                               "daily_pacing": False}), 1)
    while clock.now() < ENTRY_CYCLE - timedelta(minutes=5):
        await _cycle(container, clock)
    previous = container.bot.last_cycle
    clock.advance(timedelta(minutes=5))
    bot, now = container.bot, clock.now()
    configs = await bot.choices.resolve(await bot.active_configs(), now)
    analyses = await bot.analysis.analyze_symbols(configs, now)
    async with bot.accounts_for_the_cycle():
        outcome = await bot.decide_users(configs, analyses, now, {user_id: in_doubt}, previous)
    await container.db.dispose()
    return outcome.entries, outcome.rejections


async def test_an_entry_in_doubt_counts_towards_the_daily_limit(settings: Settings) -> None:
    entries, _ = await _entry_cycle_with(settings, set())
    assert entries == 1, "the control: with nothing in doubt the user buys once"
    entries, rejections = await _entry_cycle_with(settings, {"BTCUSDT"})
    assert entries == 0 and rejections["daily trade limit reached"] >= 1, rejections
