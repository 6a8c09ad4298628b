"""Engine cycles at scale (issue 19): N active users on 4 symbols, the paper exchange over the bundled candles,
SQLite or PostgreSQL; seconds (wall) and CPU per cycle, SQL statements and commits per cycle and per user, rows
and bytes the database gains per cycle, market-data requests and analyst calls per cycle.

    PYTHONPATH=. .venv/bin/python benchmarks/engine_scale.py --users 100,1000 --databases sqlite,postgres \\
        [--cycles 6] [--warm-up 1] [--start 2025-10-01T08:00] [--postgres-url postgresql+asyncpg://...]

Each (users, database) case runs in a fresh process: the users are written in bulk, then `--warm-up` cycles run
unmeasured (the first cycle reads the candles and fills every cache), then `--cycles` consecutive 5-minute cycles are
measured one by one. CPU is this process's (the engine and, on SQLite, the database thread); on PostgreSQL the
server's CPU (its postmaster and backends, from /proc) is shown beside it. The PostgreSQL URL defaults to
TEST_POSTGRES_URL (`eval "$(scripts/postgres.sh start)"`); the benchmark works in its own database, `trdbot_bench`,
which it creates and empties. Wall time on a shared machine drifts: CPU is the steadier figure.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.config import Settings
from app.container import Container, paper_account_id
from app.db import upgrade
from app.domain.clock import SimulatedClock
from app.models import Portfolio, SimAccount, TradingConfigRow, User
from app.venues.paper.accounts import SimAccountState

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")
TABLES = ("analyses", "analysis_decisions", "decision_tallies", "decision_spans", "events", "orders", "trades",
          "open_positions", "sim_accounts")
BENCH_DATABASE = "trdbot_bench"


# -- counting ---------------------------------------------------------------------------------------------------

class StatementCounter:
    """SQL statements (an executemany counts once: one round trip) and commits, through SQLAlchemy's engine events."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.statements = self.commits = 0
        event.listen(engine.sync_engine, "before_cursor_execute", self._statement)
        event.listen(engine.sync_engine, "commit", self._commit)

    def _statement(self, *_args: Any) -> None:
        self.statements += 1

    def _commit(self, *_args: Any) -> None:
        self.commits += 1


class CountingMarket:
    """The engine's market-data adapter, counting its kline requests."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.requests = inner, 0

    async def get_klines(self, *args: Any, **kwargs: Any) -> Any:
        self.requests += 1
        return await self.inner.get_klines(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class CountingAnalyst:
    """An analyst, counting its calls."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.calls = inner, 0
        self.name = inner.name

    async def analyze(self, features: Any) -> Any:
        self.calls += 1
        return await self.inner.analyze(features)

    async def analyze_detailed(self, features: Any) -> Any:
        self.calls += 1
        detailed = getattr(self.inner, "analyze_detailed", None)
        if detailed is None:
            from app.domain.values import AnalystReport
            return AnalystReport(signal=await self.inner.analyze(features), analyzer=self.inner.name)
        return await detailed(features)


def _server_cpu_s(pids: Sequence[int]) -> float:
    """CPU seconds of the PostgreSQL server: its postmaster (with its reaped children) and every live child."""
    if not pids:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    postmaster = _stat(pids[0])[1]  # a backend's parent
    total = sum(_stat(postmaster)[0][i] for i in (0, 1, 2, 3))
    for pid in _children(postmaster):
        fields = _stat(pid)[0]
        total += fields[0] + fields[1]
    return total / tick


def _stat(pid: int) -> tuple[list[int], int]:
    """(utime, stime, cutime, cstime) and the parent pid of a process, from /proc (0s once it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return [0, 0, 0, 0], 0
    after = raw[raw.rindex(")") + 2:].split()
    return [int(after[i]) for i in (11, 12, 13, 14)], int(after[1])


def _children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _stat(int(entry.name))[1] == parent:
            found.append(int(entry.name))
    return found


# -- the database and its users -----------------------------------------------------------------------------------

async def _fresh_postgres(url: str) -> str:
    """The bench's own database on the server of `url`, emptied and migrated."""
    parsed = make_url(url)
    admin = create_async_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)"))
        await connection.execute(text(f"CREATE DATABASE {BENCH_DATABASE}"))
    await admin.dispose()
    return parsed.set(database=BENCH_DATABASE).render_as_string(hide_password=False)


async def _add_users(engine: AsyncEngine, settings: Settings, count: int, now: datetime) -> None:
    """`count` active paper users with the default config, written in bulk (as registration would, one by one)."""
    account = SimAccountState()
    account.move("USDT", free_delta=settings.paper_start_balance)
    state = json.dumps(account.to_dict(), sort_keys=True)
    template = dataclasses.replace(settings.trading_config(0), is_active=True)
    async with engine.begin() as connection:
        for first in range(0, count, 2000):
            names = [f"u{i}" for i in range(first, min(count, first + 2000))]
            await connection.execute(insert(User), [
                {"username": n, "email": f"{n}@example.com", "password_hash": "x", "mode": "paper", "created_at": now}
                for n in names
            ])
            ids = (await connection.execute(select(User.id).where(User.username.in_(names)))).scalars().all()
            config = TradingConfigRow(user_id=0, updated_at=now)
            _assign_config(config, template)
            values = {c.key: getattr(config, c.key) for c in TradingConfigRow.__table__.columns
                      if c.key not in ("id", "user_id", "last_analyzed_at")}
            await connection.execute(insert(TradingConfigRow), [{**values, "user_id": i} for i in ids])
            await connection.execute(insert(Portfolio), [
                {"user_id": i, "start_balance": settings.paper_start_balance, "total_trades": 0, "winning_trades": 0,
                 "losing_trades": 0, "total_realized_pnl": 0 * settings.paper_start_balance,
                 "total_fees": 0 * settings.paper_start_balance, "updated_at": now} for i in ids
            ])
            await connection.execute(insert(SimAccount), [
                {"account_id": paper_account_id(i), "state": state, "updated_at": now} for i in ids
            ])


def _assign_config(row: TradingConfigRow, config: Any) -> None:
    from app.repositories.trading import ConfigRepository
    ConfigRepository._assign(row, config)


async def _row_counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as connection:
        present = set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
        return {t: (await connection.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one()
                for t in TABLES if t in present}


async def _database_bytes(engine: AsyncEngine, url: str) -> int:
    if engine.dialect.name == "sqlite":
        path = Path(make_url(url).database or "")
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    async with engine.connect() as connection:
        return int((await connection.execute(text("SELECT pg_database_size(current_database())"))).scalar_one())


async def _backend_pids(engine: AsyncEngine) -> list[int]:
    if engine.dialect.name != "postgresql":
        return []
    async with engine.connect() as connection:
        return [int((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())]


# -- one case ----------------------------------------------------------------------------------------------------

async def run_case(users: int, database: str, cycles: int, warm_up: int, start: datetime,
                   postgres_url: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        if database == "sqlite":
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'scale.db'}"
        else:
            if not postgres_url:
                raise SystemExit("PostgreSQL: pass --postgres-url or set TEST_POSTGRES_URL")
            url = await _fresh_postgres(postgres_url)
        await asyncio.to_thread(upgrade, url)
        settings = Settings(database_url=url, jwt_secret="x" * 40, default_symbols=SYMBOLS, _env_file=None)
        clock = SimulatedClock(start)
        container = Container(settings, market_clock=clock)
        await _add_users(container.db.engine, settings, users, clock.now())
        bot = container.bot
        market = CountingMarket(bot.analysis.market)
        bot.analysis.market = market
        analysts = {kind: CountingAnalyst(a) for kind, a in bot.analysts.items()}
        bot.analysts = analysts
        counter = StatementCounter(container.db.engine)
        pids = await _backend_pids(container.db.engine)
        rows: list[dict[str, Any]] = []
        for n in range(warm_up + cycles):
            clock.advance(timedelta(minutes=5))
            counts, size = await _row_counts(container.db.engine), await _database_bytes(container.db.engine, url)
            before = (time.perf_counter(), time.process_time(), _server_cpu_s(pids), counter.statements,
                      counter.commits, market.requests, sum(a.calls for a in analysts.values()))
            summary = await bot.run_cycle(clock.now())
            after = (time.perf_counter(), time.process_time(), _server_cpu_s(pids), counter.statements,
                     counter.commits, market.requests, sum(a.calls for a in analysts.values()))
            added = {t: c - counts.get(t, 0) for t, c in (await _row_counts(container.db.engine)).items()}
            grown = await _database_bytes(container.db.engine, url) - size
            wall, cpu, server, statements, commits, requests, calls = (a - b for a, b in zip(after, before, strict=True))
            rows.append({
                "cycle": clock.now().isoformat(), "warm_up": n < warm_up, "wall_s": round(wall, 3),
                "cpu_s": round(cpu, 3), "server_cpu_s": round(server, 3), "statements": statements,
                "commits": commits, "statements_per_user": round(statements / users, 2),
                "market_requests": requests, "analyst_calls": calls, "entries": summary.entries,
                "exits": summary.exits, "rows_added": added, "bytes_added": grown,
            })
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        await container.db.dispose()
    measured = [r for r in rows if not r["warm_up"]]
    return {"users": users, "database": database, "cycles": rows, "summary": _summary(measured)}


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str) -> float:
        return round(statistics.median(r[key] for r in rows), 3)

    return {
        "wall_s_median": med("wall_s"), "wall_s_max": max(r["wall_s"] for r in rows),
        "cpu_s_median": med("cpu_s"), "cpu_s_max": max(r["cpu_s"] for r in rows),
        "server_cpu_s_median": med("server_cpu_s"), "statements_per_user_median": med("statements_per_user"),
        "commits_median": med("commits"), "rows_added_median": statistics.median(sum(r["rows_added"].values())
                                                                                   for r in rows),
        "bytes_added_median": med("bytes_added"), "entries": sum(r["entries"] for r in rows),
        "exits": sum(r["exits"] for r in rows),
        "market_requests_per_cycle": sorted({r["market_requests"] for r in rows}),
        "analyst_calls_per_cycle": sorted({r["analyst_calls"] for r in rows}),
    }


# -- the command ---------------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", default="100,1000", help="comma-separated user counts")
    parser.add_argument("--databases", default="sqlite", help="sqlite, postgres or both, comma-separated")
    parser.add_argument("--cycles", type=int, default=6, help="measured cycles per case")
    parser.add_argument("--warm-up", type=int, default=1, help="unmeasured cycles first")
    parser.add_argument("--start", default="2025-10-01T08:00", help="UTC time of the first cycle (bundled: Sep-Dec 2025)")
    parser.add_argument("--postgres-url", default=os.environ.get("TEST_POSTGRES_URL"))
    parser.add_argument("--json", type=Path, help="write every case's cycles and summary here")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # users:database, run in this process
    args = parser.parse_args()
    start = datetime.fromisoformat(args.start).replace(tzinfo=UTC)
    if args.case:
        users, database = args.case.split(":")
        result = asyncio.run(run_case(int(users), database, args.cycles, args.warm_up, start, args.postgres_url))
        print(json.dumps(result))
        return
    results = []
    for database in args.databases.split(","):
        for users in (int(u) for u in args.users.split(",")):
            command = [sys.executable, __file__, "--case", f"{users}:{database}", "--cycles", str(args.cycles),
                       "--warm-up", str(args.warm_up), "--start", args.start]
            if args.postgres_url:
                command += ["--postgres-url", args.postgres_url]
            done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            results.append(result)
            print(f"{users:>6} users  {database:<8} " + "  ".join(f"{k}={v}" for k, v in result["summary"].items()),
                  flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
