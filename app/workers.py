"""The users of a cycle decided by worker processes on any number of machines (ENGINE_DECIDE_ON=workers), through
procrastinate, a task queue kept in the PostgreSQL the service already needs (no broker, no other service).

The leader (the engine that holds the leader lock) reconciles, watches exits and analyses each symbol once, as it
always does, then publishes the cycle (`engine_cycles`: the users' resolved configs, the analyses with their
features, the entries in doubt), enqueues one job per batch of ENGINE_USER_BATCH users and waits for them. A
`trdbot worker` process takes jobs, rebuilds the cycle and decides its batch with the engine's own
`Decisions.decide_batch`. Workers send a heartbeat every WORKER_HEARTBEAT_SECONDS; the job of a worker silent for
WORKER_LEASE_SECONDS (killed, its machine gone) is put back in the queue by the leader and taken by another worker.

Exactly once, even for a redone batch (README "Workers beyond one machine"):
- a user is marked decided for the cycle in the same transaction as their decision rows, and only if no one marked
  them in this cycle (ConfigRepository.mark_analyzed): a redo skips them (the rate limit), an overlap writes nothing;
- an entry's order row is written, with a client id made of (user, symbol, cycle) and unique, before its order goes
  out: a redo finds the rows of the batch's earlier attempt and holds those symbols (in doubt: the next cycle's
  reconciliation asks the exchange by client id and books or drops them), and an overlapping attempt cannot write
  the same row twice (the unique client id), so it never sends a second order.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import pickle
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from procrastinate import App, PsycopgConnector, RetryStrategy
from procrastinate.types import JSONValue
from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain.clock import SimulatedClock
from app.domain.records import Purpose
from app.domain.risk import TradingConfig
from app.domain.values import SignalType
from app.engine.analysis import SymbolAnalysis
from app.engine.bot import TradingBot
from app.engine.decisions import Analyses, BatchOutcome
from app.models import EngineCycle, OrderRow, Trade

log = logging.getLogger("trdbot.workers")

QUEUE = "trdbot-decide"
TASK = "trdbot.decide_batch"
SCHEMA_LOCK = (0x74726462, 2)  # pg_advisory_xact_lock(namespace "trdb", 2): one process applies the queue's schema
POLL_S = 0.25
KEEP_CYCLES = timedelta(days=1)  # published cycles older than this are deleted by the leader
FINAL = {"succeeded", "failed", "cancelled", "aborted"}

Decide = Callable[[datetime, list[int]], Awaitable[None]]


class CycleClock(SimulatedClock):
    """A worker's market clock on the paper replay: each batch runs at its cycle's time, so the paper exchange fills
    at that time's prices (set even backwards: a straggler of an older cycle runs after a newer one)."""

    def pin(self, when: datetime) -> None:
        self._now = when.astimezone(UTC)


@dataclass(slots=True)
class PublishedCycle:
    """What every batch of a cycle is decided on: what the leader's own `decide_users` would have been given."""

    configs: dict[int, TradingConfig]
    analyses: dict[tuple[str, str], SymbolAnalysis]
    in_doubt: dict[int, set[str]]
    previous_cycle: datetime | None


def conninfo(database_url: str) -> str:
    """The libpq address of the service's database (procrastinate talks to it through psycopg 3)."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise ValueError("the task queue lives in PostgreSQL")
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def task_app(database_url: str, decide: Decide | None = None) -> App:
    """The queue and its one task. The leader only enqueues (`decide` None); a worker runs `decide`. A batch that
    raised is retried (a second attempt finds the first one's marks and order rows: nothing is done twice)."""
    app = App(connector=PsycopgConnector(conninfo=conninfo(database_url), min_size=1, max_size=3))

    @app.task(name=TASK, queue=QUEUE, retry=RetryStrategy(max_attempts=5, wait=1))
    async def decide_batch(cycle: str, users: list[int]) -> None:
        if decide is None:
            raise RuntimeError("this process only enqueues batches")
        await decide(datetime.fromisoformat(cycle), users)

    return app


async def ensure_queue_schema(database_url: str) -> None:
    """procrastinate's tables, functions and triggers, applied once (under a lock) by the first process that needs
    them; PostgreSQL only. A later procrastinate with schema changes needs its migrations applied by hand (its
    docs, "Migrations")."""
    from procrastinate.schema import SchemaManager

    async with await psycopg.AsyncConnection.connect(conninfo(database_url)) as connection, connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock(%s, %s)", SCHEMA_LOCK)
        found = await (await connection.execute("SELECT to_regclass('procrastinate_jobs')")).fetchone()
        if found is not None and found[0] is None:
            await connection.execute(SchemaManager.get_schema())
            log.info("the task queue's schema (procrastinate) is applied")


class CycleStore:
    """The published cycles, in `engine_cycles`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def publish(self, now: datetime, cycle: PublishedCycle, wall: datetime) -> None:
        payload = pickle.dumps(cycle, protocol=pickle.HIGHEST_PROTOCOL)
        async with self.engine.begin() as connection:
            await connection.execute(delete(EngineCycle).where(EngineCycle.cycle_at == now))
            await connection.execute(delete(EngineCycle).where(EngineCycle.cycle_at < now - KEEP_CYCLES))
            await connection.execute(insert(EngineCycle).values(cycle_at=now, payload=payload, created_at=wall))

    async def load(self, cycle_at: datetime) -> PublishedCycle | None:
        async with self.engine.connect() as connection:
            payload = await connection.scalar(select(EngineCycle.payload).where(EngineCycle.cycle_at == cycle_at))
        if payload is None:
            return None
        cycle = pickle.loads(payload)  # written by this service's leader into its own database
        assert isinstance(cycle, PublishedCycle)
        return cycle


def _portable(analysis: SymbolAnalysis) -> SymbolAnalysis:
    """The analysis with its features in it (a worker cannot call the leader's loader). A hold never reaches the
    risk manager, the only reader of features, so its features are not loaded, as in one process."""
    if analysis.report.signal.signal == SignalType.HOLD:
        return dataclasses.replace(analysis, load_features=None)
    return dataclasses.replace(analysis, features=analysis.entry_features(), load_features=None)


class WorkerDecisions:
    """The leader's side: the bot's `decide_elsewhere`. Publishes the cycle, enqueues its batches, waits for them
    (putting back the batch of a worker silent longer than the lease) until WORKER_CYCLE_DEADLINE_SECONDS."""

    def __init__(self, engine: AsyncEngine, app: App, batch_size: int, lease_s: float, deadline_s: float) -> None:
        self.store, self.engine, self.app = CycleStore(engine), engine, app
        self.batch_size, self.lease_s, self.deadline_s = batch_size, lease_s, deadline_s

    async def __call__(self, configs: Sequence[TradingConfig], analyses: Analyses, now: datetime,
                       in_doubt: Mapping[int, set[str]], previous_cycle: datetime | None) -> BatchOutcome:
        cycle = PublishedCycle({c.user_id: c for c in configs}, {k: _portable(a) for k, a in analyses.items()},
                               {u: set(s) for u, s in in_doubt.items()}, previous_cycle)
        await self.store.publish(now, cycle, datetime.now(UTC))
        ids = [c.user_id for c in configs]
        batches = [ids[i:i + self.batch_size] for i in range(0, len(ids), self.batch_size)]
        if not batches:
            return BatchOutcome()
        deferrer = self.app.configure_task(TASK, queue=QUEUE)
        arguments: list[dict[str, JSONValue]] = [{"cycle": now.isoformat(), "users": list[JSONValue](b)}
                                                 for b in batches]
        job_ids = await deferrer.batch_defer_async(*arguments)
        log.info("cycle %s: %d users in %d batches queued for the workers", now.isoformat(), len(ids), len(batches))
        await self.wait(job_ids, now)
        return BatchOutcome(entries=await self._entries(now))

    async def wait(self, job_ids: Sequence[int], now: datetime) -> None:
        """Until every batch of the cycle is finished or the deadline passes; a batch of a silent worker is put
        back in the queue for another. What is left at the deadline is reported (its workers go on)."""
        deadline = time.monotonic() + self.deadline_s
        next_check = time.monotonic() + min(self.lease_s, 1.0)
        statuses: dict[int, str] = {}
        while time.monotonic() < deadline:
            rows = await self.app.connector.execute_query_all_async(
                "SELECT id, status::text AS status FROM procrastinate_jobs WHERE id = ANY(%(ids)s)", ids=list(job_ids))
            statuses = {row["id"]: row["status"] for row in rows}
            if all(statuses.get(i) in FINAL for i in job_ids):
                break
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + min(self.lease_s, 1.0)
                await self.redo_stalled()
            await asyncio.sleep(POLL_S)
        failed = [i for i in job_ids if statuses.get(i) in FINAL - {"succeeded"}]
        left = [i for i in job_ids if statuses.get(i) not in FINAL]
        if failed:
            log.error("cycle %s: batch jobs %s failed after their retries", now.isoformat(), failed)
        if left:
            log.error("cycle %s: batch jobs %s not finished after %.0f s (they go on)", now.isoformat(), left,
                      self.deadline_s)

    async def redo_stalled(self) -> list[int]:
        """Batches held by a worker whose heartbeat is older than the lease: back in the queue."""
        stalled = await self.app.job_manager.get_stalled_jobs(queue=QUEUE, seconds_since_heartbeat=self.lease_s)
        redone = []
        for job in stalled:
            log.warning("batch job %s: its worker %s was silent for %.0f s: another worker takes it", job.id,
                        job.worker_id, self.lease_s)
            await self.app.job_manager.retry_job(job)
            assert job.id is not None
            redone.append(job.id)
        return redone

    async def _entries(self, now: datetime) -> int:
        async with self.engine.connect() as connection:
            return int(await connection.scalar(select(func.count()).select_from(Trade).where(Trade.executed_at == now))
                       or 0)


class BatchDecider:
    """A worker's side: one job, one batch of one cycle, decided by the engine's own `Decisions.decide_batch`.
    `market_clock`: the paper replay's clock, set to the cycle's time so the paper exchange fills at its prices.
    `stall_s` (tests only): the first batch's entries, once sent, pause that long before anything is booked."""

    def __init__(self, bot: TradingBot, engine: AsyncEngine, market_clock: CycleClock | None = None,
                 stall_s: float = 0.0) -> None:
        self.bot, self.engine, self.store = bot, engine, CycleStore(engine)
        self.market_clock = market_clock
        self._cycles: dict[datetime, PublishedCycle] = {}
        self._pinned = asyncio.Lock()  # the replay clock is one per process
        if stall_s > 0:
            bot.entries.after_sending = self._stall_once(stall_s)

    def _stall_once(self, seconds: float) -> Callable[[], Awaitable[None]]:
        async def stall() -> None:
            self.bot.entries.after_sending = None
            log.warning("worker pid %d stalls %.0f s inside a batch, its entries sent and not booked", os.getpid(),
                        seconds)
            await asyncio.sleep(seconds)
        return stall

    async def __call__(self, cycle_at: datetime, user_ids: list[int]) -> None:
        cycle = await self._cycle(cycle_at)
        if cycle is None:
            log.warning("batch of cycle %s: the cycle is not published (pruned?): nothing to decide",
                        cycle_at.isoformat())
            return
        configs = [cycle.configs[u] for u in user_ids if u in cycle.configs]
        wanted = set(user_ids)
        in_doubt = {u: set(s) for u, s in cycle.in_doubt.items() if u in wanted}
        for user_id, symbol in await self._entries_of_the_cycle(user_ids, cycle_at):
            in_doubt.setdefault(user_id, set()).add(symbol)  # an earlier attempt's: never sent twice
        bot = self.bot
        async with self._market_time(cycle_at), bot.accounts_for_the_cycle():
            outcome = await bot.decisions.decide_batch(configs, cycle.analyses, cycle_at, in_doubt,
                                                       cycle.previous_cycle)
        if outcome.decided_elsewhere == 0:  # an overlapping attempt's tallies are the other attempt's
            await bot.decisions.write_tallies(outcome.tally_records())
        log.info("batch of cycle %s: %d users, %d entries", cycle_at.isoformat(), len(configs), outcome.entries)

    @contextlib.asynccontextmanager
    async def _market_time(self, cycle_at: datetime) -> AsyncIterator[None]:
        """On the paper replay, the batch runs at its cycle's time, alone: with `--concurrency` above 1, a batch of
        another cycle must not move the clock (and the fills' prices) under it."""
        if self.market_clock is None:
            yield
            return
        async with self._pinned:
            self.market_clock.pin(cycle_at)
            yield

    async def _cycle(self, cycle_at: datetime) -> PublishedCycle | None:
        cycle = self._cycles.get(cycle_at)
        if cycle is None:
            cycle = await self.store.load(cycle_at)
            if cycle is not None:
                self._cycles = {cycle_at: cycle}  # one cycle at a time is kept
        return cycle

    async def _entries_of_the_cycle(self, user_ids: Sequence[int], cycle_at: datetime) -> list[tuple[int, str]]:
        """The entry order rows earlier attempts at this batch wrote in this cycle (their orders may be out)."""
        async with self.engine.connect() as connection:
            rows = await connection.execute(
                select(OrderRow.user_id, OrderRow.symbol).where(
                    OrderRow.purpose == Purpose.ENTRY.value, OrderRow.created_at == cycle_at,
                    OrderRow.user_id.in_(list(user_ids))))
            return [(int(user_id), str(symbol)) for user_id, symbol in rows]


def worker_options(heartbeat_s: float, lease_s: float, concurrency: int) -> dict[str, Any]:
    return {"queues": [QUEUE], "concurrency": concurrency, "name": f"trdbot-worker-{os.getpid()}",
            "update_heartbeat_interval": heartbeat_s, "stalled_worker_timeout": lease_s,
            "fetch_job_polling_interval": 1.0, "install_signal_handlers": True, "wait": True}
