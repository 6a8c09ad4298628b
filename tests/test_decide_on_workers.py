"""ENGINE_DECIDE_ON=workers as real processes on PostgreSQL (issue 19): a leading engine, a standby and three
`trdbot worker` processes decide 300 paper users; the worker holding a batch is killed after its entries went out
and before anything was booked. Every user is decided exactly once in that cycle, no order is sent twice (the
books and the paper exchange's own accounts agree), the killed worker's entries are booked and protected by the next
cycle, and killing the leader hands the loop to the standby within one cycle."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import subprocess
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from app.config import Settings
from app.container import Container
from app.domain.clock import ms_from_utc
from app.domain.records import AnalysisRecord
from app.models import (
    Analysis,
    AnalysisDecision,
    DecisionTally,
    OpenPosition,
    OrderRow,
    SimAccount,
    Trade,
    TradingConfigRow,
)
from tests.test_serve_workers import _env, _lines, _start, _stop, _wait_for

pytestmark = pytest.mark.slow

USERS = 300
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")
RESUME_AT = datetime(2025, 10, 1, 1, 28, tzinfo=UTC)  # the replay resumes here (the latest analysis)
ENTRY_CYCLE = datetime(2025, 10, 1, 1, 30, tzinfo=UTC)  # every user buys (tests/services/test_engine_batches.py)
SPEED = 30  # market seconds per wall second: a 5-minute cycle every 10 s
INTERVAL_WALL_S = 300 / SPEED


async def _population(settings: Settings) -> None:
    container = Container(settings.model_copy(update={"default_symbols": SYMBOLS}))
    async with container.uow() as uow:
        for n in range(USERS):
            user = await uow.users.add(f"user{n}", f"user{n}@example.com", "hash", RESUME_AT)
            await uow.configs.create(dataclasses.replace(container.default_config(user.id), is_active=True), RESUME_AT)
            await uow.portfolios.create(user.id, settings.paper_start_balance, RESUME_AT)
            await container.open_paper_account(uow, user.id)
        await uow.analyses.add(AnalysisRecord(
            symbol="BTCUSDT", created_at=RESUME_AT, analyzer="rules", signal="hold", confidence=0,
            reasoning="the replay resumes here", regime="ranging", confluence_score=Decimal(0),
            last_price=Decimal(1), entry_price=None, stop_loss=None, take_profit=None))
        await uow.commit()
    await container.db.dispose()


async def _books(url: str) -> dict[str, object]:
    engine = create_async_engine(url)
    async with engine.connect() as c:
        analyses = (await c.execute(select(Analysis.id).where(Analysis.created_at == ENTRY_CYCLE))).scalars().all()
        decisions = (await c.execute(select(AnalysisDecision.user_id, AnalysisDecision.analysis_id,
                                            AnalysisDecision.decision)
                                     .where(AnalysisDecision.analysis_id.in_(analyses)))).all()
        tallies = (await c.execute(select(DecisionTally.analysis_id, DecisionTally.decision, DecisionTally.reason,
                                          DecisionTally.count).where(DecisionTally.analysis_id.in_(analyses)))).all()
        entries = (await c.execute(select(OrderRow.user_id, OrderRow.symbol, OrderRow.client_order_id, OrderRow.trade_id)
                                   .where(OrderRow.purpose == "entry", OrderRow.created_at == ENTRY_CYCLE))).all()
        trades = (await c.execute(select(Trade.entry_client_order_id).where(Trade.executed_at == ENTRY_CYCLE))
                  ).scalars().all()
        positions = (await c.execute(select(OpenPosition.user_id, OpenPosition.symbol, OpenPosition.oco_order_id))
                     ).all()
        marked = (await c.execute(select(func.count()).select_from(TradingConfigRow)
                                  .where(TradingConfigRow.last_analyzed_at >= ENTRY_CYCLE))).scalar_one()
        accounts = (await c.execute(select(SimAccount.account_id, SimAccount.state))).all()
    await engine.dispose()
    return {"analyses": analyses, "decisions": decisions, "tallies": tallies, "entries": entries, "trades": trades,
            "positions": positions, "marked": marked, "accounts": accounts}


def _cycle_buys(accounts: list[tuple[str, object]]) -> Counter[tuple[str, str]]:
    """The paper exchange's own record: market buys of the entry cycle, per account and symbol."""
    suffix = f"-{ms_from_utc(ENTRY_CYCLE)}"
    buys: Counter[tuple[str, str]] = Counter()
    for account_id, state in accounts:
        data = json.loads(state) if isinstance(state, str) else state
        for order in data["orders"]:  # type: ignore[index]
            if order["side"] == "BUY" and order["type"] == "MARKET" and order["client_order_id"].endswith(suffix):
                buys[(account_id, order["symbol"])] += 1
    return buys


async def test_a_user_is_marked_decided_once_per_cycle(container: Container) -> None:
    """Two attempts at one batch in one cycle (a batch redone while its first worker still wrote): the second marks
    no one, so it writes none of the users' rows (app/engine/decisions.py `_write_batch`)."""
    async with container.uow() as uow:
        user = await uow.users.add("alice", "alice@example.com", "hash", RESUME_AT)
        await uow.configs.create(dataclasses.replace(container.default_config(user.id), is_active=True), RESUME_AT)
        await uow.commit()
    for when, expected in ((ENTRY_CYCLE, {user.id}), (ENTRY_CYCLE, set()), (RESUME_AT, set()),
                           (ENTRY_CYCLE.replace(minute=35), {user.id})):
        async with container.uow() as uow:
            assert await uow.configs.mark_analyzed([user.id], when) == expected, when
            await uow.commit()


def _alive(processes: dict[str, tuple[subprocess.Popen[bytes], Path]]) -> bool:
    for name, (process, output) in processes.items():
        if process.poll() is not None:
            raise AssertionError(f"{name} exited ({process.returncode}):\n{output.read_text()[-3000:]}")
    return True


def test_three_workers_decide_every_user_once_and_a_killed_workers_batch_is_redone(
    settings: Settings, tmp_path: Path
) -> None:
    url = settings.database_url
    if make_url(url).get_backend_name() != "postgresql":
        pytest.skip("the task queue lives in PostgreSQL (ENGINE_DECIDE_ON=workers refuses SQLite)")
    asyncio.run(_population(settings))
    env = _env(url, tmp_path, DEFAULT_SYMBOLS=json.dumps(SYMBOLS), ENGINE_DECIDE_ON="workers", ENGINE_USER_BATCH="25",
               WORKER_HEARTBEAT_SECONDS="0.5", WORKER_LEASE_SECONDS="3", WORKER_CYCLE_DEADLINE_SECONDS="60",
               LOG_LEVEL="INFO")
    env.update(REPLAY_SPEED=str(SPEED), TRADING_INTERVAL_SECONDS="300", LEADER_RETRY_SECONDS="1")
    env.pop("ENGINE_NICE", None)
    processes: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    try:
        # the first worker alone, so that it takes a batch, and stalls there once its entries went out
        processes["w1"] = _start(["worker"], {**env, "WORKER_STALL_SECONDS": "600"}, tmp_path, "w1")
        _wait_for(lambda: _alive(processes) and "deciding batches" in processes["w1"][1].read_text(), 60,
                  "the first worker")
        processes["leader"] = _start(["engine", "--no-migrate"], env, tmp_path, "leader")
        _wait_for(lambda: _alive(processes) and "leads" in processes["leader"][1].read_text(), 60,
                  "the engine to lead")
        processes["standby"] = _start(["engine", "--no-migrate"], env, tmp_path, "standby")
        _wait_for(lambda: _alive(processes) and "stalls" in processes["w1"][1].read_text(), 60,
                  "the first worker to stall in a batch")
        processes["w2"] = _start(["worker"], env, tmp_path, "w2")
        processes["w3"] = _start(["worker"], env, tmp_path, "w3")
        w1 = processes["w1"][0]
        w1.send_signal(signal.SIGKILL)
        w1.wait()
        leader_log = processes["leader"][1]
        _wait_for(lambda: "cycle=2025-10-01T01:30" in leader_log.read_text(), 90, "the entry cycle to end")
        assert "another worker takes it" in leader_log.read_text(), "the killed worker's batch was put back"
        _wait_for(lambda: len(_lines(leader_log, "cycle=")) >= 2, 60, "the next cycle (reconciliation)")

        books = asyncio.run(_books(url))
        analyses, tallies = books["analyses"], books["tallies"]
        assert len(analyses) == len(SYMBOLS)  # type: ignore[arg-type]
        rows = books["decisions"]
        decisions = Counter((user_id, analysis_id) for user_id, analysis_id, _ in rows)  # type: ignore[union-attr]
        assert decisions and max(decisions.values()) == 1, "a user's decision row written twice"
        # every user met every analysis of the cycle exactly once: the tallies count each decision once (a
        # rejection once per reason: those are counted from the users' own rows instead)
        decided: Counter[int] = Counter(a for _, a, decision in rows if decision == "rejected")  # type: ignore[union-attr]
        for analysis_id, decision, _reason, count in tallies:  # type: ignore[union-attr]
            if decision != "rejected":
                decided[analysis_id] += count
        assert decided == dict.fromkeys(analyses, USERS), decided  # type: ignore[arg-type]
        assert books["marked"] == USERS, "every user was decided in that cycle"

        entries = books["entries"]
        assert len({(u, s) for u, s, _, _ in entries}) == len(entries), "one entry per user and symbol"  # type: ignore[union-attr]
        buys = _cycle_buys(books["accounts"])  # type: ignore[arg-type]
        assert buys and max(buys.values()) == 1, "the paper exchange got an entry twice"
        assert len(buys) == len(entries), "every order the exchange has, the books have (by client id)"  # type: ignore[arg-type]
        assert all(trade_id is not None for *_, trade_id in entries), "every entry booked by the next cycle"  # type: ignore[union-attr]
        assert sorted(books["trades"]) == sorted(c for _, _, c, _ in entries)  # type: ignore[union-attr, type-var]
        assert all(oco is not None for *_, oco in books["positions"]), "every position protected"  # type: ignore[union-attr]

        # the leader dies: the standby leads within one cycle
        standby_log = processes["standby"][1]
        assert _lines(standby_log, "cycle=") == []
        leader = processes["leader"][0]
        leader.send_signal(signal.SIGKILL)
        leader.wait()
        killed_at = datetime.now(UTC)
        _wait_for(lambda: _lines(standby_log, "leads") != [], 30, "the standby to lead")
        _wait_for(lambda: _lines(standby_log, "cycle=") != [], 60, "a cycle of the new leader")
        took_over_s = (_lines(standby_log, "leads")[0] - killed_at).total_seconds()
        assert took_over_s < INTERVAL_WALL_S, f"the standby led {took_over_s:.1f} s after the leader died"
    finally:
        for process, _ in processes.values():
            _stop(process)
