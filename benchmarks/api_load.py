"""API latency at a fixed request rate while the engine trades (issue 19): an open-loop generator against
`trdbot serve` over a database seeded with USERS users of TRADES trades each, ACTIVE of them trading.

    PYTHONPATH=. .venv/bin/python benchmarks/api_load.py --database-url postgresql+asyncpg://u:p@host/db
        [--users 1000] [--trades 50] [--active 100] [--orders 150] [--rate 200] [--duration 30]
        [--routes trades,portfolio] [--workers 2] [--replay-speed 30] [--checkout DIR] [--json out.json]

Open loop: request i is sent at start + i / RATE whatever happened to the earlier ones, on keep-alive connections
opened as needed, and its latency runs from that scheduled moment to the last byte of the answer (a server that
stalls delays every request due meanwhile, as it would real clients). Each route runs DURATION seconds after a
warm-up at the same rate (not counted); the report gives the achieved rate, p50 / p90 / p99 / max, errors (by
status), timeouts (no answer within --timeout), the CPU the API processes, the engine and PostgreSQL spent per
request, the engine's cycles meanwhile (from its metrics log) and the machine's load (it may be shared).

The database is emptied and seeded on every run (its migrations are the served checkout's). `--workers 0` serves
the API and the engine in one process, as `serve` without `--workers` does (and as the code before issue 19
did: `--checkout` runs another checkout's code, e.g. `git archive <commit> | tar -x -C DIR`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

REPO = Path(__file__).resolve().parents[1]
ROUTES = {"trades": "/trading/trades?limit=50", "portfolio": "/portfolio", "status": "/trading/status",
          "performance": "/portfolio/performance", "health": "/health"}
TICK_S = 1 / os.sysconf("SC_CLK_TCK")
TIMELINES: list[list[tuple[float, float]]] = []  # (sent at, latency ms) of each answered request, per run
CYCLE_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})Z .*cycle=\S+ seconds=([\d.]+)")


# ---------------------------------------------------------------- seeding

def _history_start() -> datetime:
    return datetime(2025, 6, 1, tzinfo=UTC)  # before the replay's first decision: the engine's day counts see none


def _paper_account(user_id: int, orders: int) -> dict[str, object]:
    """A paper account that has traded: 10,000 USDT, a little BTC, and `orders` finished orders kept."""
    from app.domain.values import Fill, OrderStatus, OrderType, Side
    from app.venues.paper.accounts import SimAccountState, SimOrder

    state = SimAccountState()
    state.move("USDT", free_delta=Decimal("9876.54321"))
    state.move("BTC", free_delta=Decimal("0.00123"))
    for n in range(1, orders + 1):
        price, qty = Decimal("65000.12") + n, Decimal("0.00123")
        state.orders[n] = SimOrder(
            n, f"e-{user_id}-{n}", "BTCUSDT", Side.BUY if n % 3 == 1 else Side.SELL, OrderType.MARKET,
            OrderStatus.FILLED, qty, executed_qty=qty, cumulative_quote_qty=price * qty,
            fills=[Fill(price, qty, Decimal("0.00000123"), "BTC", n)], transact_ms=1_750_000_000_000 + n * 60_000,
        )
    state.next_order_id = state.next_trade_id = orders + 1
    return state.to_dict()


def _trade_rows(user_id: int, count: int) -> list[dict[str, object]]:
    from app.domain.values import ExitReason, TradeStatus

    start = _history_start()
    rows = []
    for n in range(count):
        opened = start + timedelta(hours=7 * n + user_id % 7)
        price = Decimal("65000.12") + n
        exit_price = price * (Decimal("1.01") if n % 2 else Decimal("0.995"))
        amount, fee = Decimal("0.00123"), Decimal("0.08")
        pnl = (exit_price - price) * amount - 2 * fee
        rows.append({
            "user_id": user_id, "symbol": "BTCUSDT", "side": "BUY", "status": TradeStatus.CLOSED.value,
            "amount": amount, "price": price, "stop_loss": price * Decimal("0.99"),
            "take_profit": price * Decimal("1.02"), "ai_signal_confidence": 70, "entry_client_order_id":
            f"e-{user_id}-{n}", "entry_fee": fee, "executed_at": opened, "exit_price": exit_price,
            "exit_reason": (ExitReason.TAKE_PROFIT if n % 2 else ExitReason.STOP_LOSS).value, "exit_fee": fee,
            "fees": 2 * fee, "profit_loss": pnl, "profit_loss_percentage": pnl * 100 / (price * amount),
            "duration_seconds": 3600, "closed_at": opened + timedelta(hours=1), "analysis_id": None,
        })
    return rows


async def _insert_history(url: str, users: int, trades: int, active: int, orders: int) -> None:
    from app.config import Settings
    from app.db import Database
    from app.models import Trade
    from app.repositories import UnitOfWorkFactory

    database = Database(url)
    uow_factory = UnitOfWorkFactory(database.sessions)
    settings = Settings(_env_file=None)
    now = datetime.now(UTC)
    async with uow_factory() as uow:
        for i in range(1, users + 1):
            user = await uow.users.add(f"load{i}", f"load{i}@example.com", "not-a-real-hash", now)
            config = settings.trading_config(user.id)
            await uow.configs.create(config, now)
            if i <= active:
                await uow.configs.save(dataclasses.replace(config, is_active=True), now)
            await uow.portfolios.create(user.id, Decimal("10000"), now)
            await uow.sim_accounts.save(f"paper-{user.id}", _paper_account(user.id, orders), now)
            if i % 200 == 0:
                await uow.commit()
        await uow.commit()
        ids = [u for u in (await uow.session.execute(text("SELECT id FROM users ORDER BY id"))).scalars()]
    async with database.engine.begin() as connection:
        rows = [row for user_id in ids for row in _trade_rows(user_id, trades)]
        for chunk in range(0, len(rows), 5000):
            await connection.execute(insert(Trade.__table__), rows[chunk:chunk + 5000])
        if database.engine.dialect.name == "postgresql":
            await connection.execute(text("ANALYZE"))
    await database.dispose()


async def _empty(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            await connection.execute(text("DROP SCHEMA public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
        else:
            tables = (await connection.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))).scalars()
            for table in list(tables):
                await connection.execute(text(f'DROP TABLE IF EXISTS "{table}"'))
    await engine.dispose()


def seed(url: str, checkout: Path, users: int, trades: int, active: int, orders: int) -> float:
    """Empty the database, migrate it with the checkout's code, insert the history; returns the seconds it took."""
    started = time.perf_counter()
    asyncio.run(_empty(url))
    env = {**os.environ, "PYTHONPATH": str(checkout), "DATABASE_URL": url}
    subprocess.run([sys.executable, "-m", "app.cli", "db", "upgrade"], env=env, cwd=checkout, check=True,
                   capture_output=True)
    asyncio.run(_insert_history(url, users, trades, active, orders))
    return time.perf_counter() - started


def tokens_for(users: int, secret: str) -> list[str]:
    from app.services.security import TokenService

    service = TokenService(secret, 24 * 60)
    return [service.issue(user_id, datetime.now(UTC)) for user_id in range(1, users + 1)]


# ---------------------------------------------------------------- the server and its processes

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log_dir: Path
    output: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(args: argparse.Namespace, workdir: Path, secret: str) -> Server:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "DB_", "JWT_", "LOG_DIR", "API_W"))}
    env.update(PYTHONPATH=str(args.checkout), DATABASE_URL=args.database_url, JWT_SECRET=secret,
               LOG_DIR=str(workdir / "logs"), USE_MOCK_BINANCE="true", REPLAY_SPEED=str(args.replay_speed),
               LOG_LEVEL="WARNING" if args.quiet_log else "INFO")
    for setting in args.set or []:
        name, _, value = setting.partition("=")
        env[name] = value
    command = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
    if args.workers:
        command += ["--workers", str(args.workers)]
    output = workdir / "serve.out"
    with output.open("wb") as out:
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Server(process, port, workdir / "logs", output)


def _children(pid: int) -> list[int]:
    listed = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        direct = [int(c) for c in listed.read_text().split()]
    except OSError:
        return []
    return direct + [grand for child in direct for grand in _children(child)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _cpu_s(pid: int, with_reaped_children: bool = False) -> float:
    """CPU seconds of a process (and, if asked, of its children that have ended: PostgreSQL's backends come
    and go)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if with_reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks * TICK_S


def _postmaster(database_url: str) -> int | None:
    """The PostgreSQL server process listening on the URL's port (its backends are its children)."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        return None
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            command = _cmdline(int(entry.name))
            if "postgres" in command and f"-p {url.port or 5432}" in command and " -D " in command:
                return int(entry.name)
    return None


@dataclass
class CpuSample:
    api_s: float
    engine_s: float
    database_s: float


def cpu_sample(server: Server, postmaster: int | None) -> CpuSample:
    """CPU seconds so far of the API processes, the engine (its own process, or none when it shares the API's)
    and the PostgreSQL server."""
    pids = [server.process.pid, *_children(server.process.pid)]
    engine = sum(_cpu_s(p) for p in pids if "app.cli engine" in _cmdline(p))
    api = sum(_cpu_s(p) for p in pids if "app.cli engine" not in _cmdline(p))
    database = 0.0
    if postmaster is not None:
        database = _cpu_s(postmaster, with_reaped_children=True) + sum(_cpu_s(p) for p in _children(postmaster))
    return CpuSample(api, engine, database)


def engine_cycles(log_dir: Path, since: datetime, until: datetime) -> list[float]:
    """Seconds of each cycle the engine finished in [since, until) (its metrics log)."""
    seconds = []
    for path in sorted(log_dir.glob("metrics_*.log")):
        for line in path.read_text(errors="replace").splitlines():
            found = CYCLE_LINE.match(line)
            if found:
                at = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC)
                if since <= at < until:
                    seconds.append(float(found.group(2)))
    return seconds


# ---------------------------------------------------------------- the load

class RawClient:
    """A minimal HTTP/1.1 keep-alive client (GET only, Content-Length answers): a tenth of httpx's CPU per
    request, so the generator does not compete with the server it measures. Its connections take turns (the one
    idle longest goes next), as the many clients of a service do: reusing the last one returned would funnel
    every request through the two or three connections that happen to be fastest, hence through one worker."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._idle: deque[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = deque()

    async def open(self, connections: int) -> None:
        for _ in range(connections):
            self._idle.append(await asyncio.open_connection(self.host, self.port))

    async def get(self, path: str, token: str) -> int:
        while self._idle:  # a kept connection the server may have closed meanwhile (its keep-alive timeout)
            reader, writer = self._idle.popleft()
            try:
                return await self._get(reader, writer, path, token)
            except (OSError, asyncio.IncompleteReadError):
                continue
        return await self._get(*await asyncio.open_connection(self.host, self.port), path, token)

    async def _get(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, token: str) -> int:
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {token}\r\n\r\n"
                         .encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
        except BaseException:
            writer.close()
            raise
        self._idle.append((reader, writer))
        return status

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


@dataclass
class RouteResult:
    route: str
    rate: float
    duration_s: float
    sent: int
    answered: int
    achieved_rate: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]
    timeouts: int
    generator_lag_max_ms: float
    api_cpu_ms_per_request: float
    engine_cpu_s: float
    database_cpu_ms_per_request: float
    engine_cycles: int
    engine_cycle_mean_s: float | None
    load_average: float  # the machine's 1-minute load when the route ended (this machine may be shared)
    statuses: dict[str, int] = field(default_factory=dict)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_route(client: RawClient, path: str, tokens: list[str], rate: float, duration_s: float,
                    timeout_s: float, rng: random.Random) -> tuple[list[float], Counter[str], int, float]:
    """Send rate x duration requests on schedule; returns latencies (ms) of answered ones, statuses, timeouts and
    the generator's worst lateness (ms)."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    timeouts = 0
    lag = 0.0

    async def one(scheduled: float, token: str) -> None:
        nonlocal timeouts
        try:
            status = await asyncio.wait_for(client.get(path, token), timeout_s)
        except TimeoutError:
            timeouts += 1
            return
        except (OSError, asyncio.IncompleteReadError, ValueError) as e:
            statuses[type(e).__name__] += 1
            return
        latencies.append((loop.time() - scheduled) * 1000)
        timeline.append((round(scheduled - start, 3), round(latencies[-1], 1)))
        statuses[str(status)] += 1

    total = int(rate * duration_s)
    start = loop.time() + 0.05
    timeline: list[tuple[float, float]] = []
    TIMELINES.append(timeline)
    tasks = []
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            lag = max(lag, -delay)
        tasks.append(asyncio.create_task(one(scheduled, tokens[rng.randrange(len(tokens))])))
    await asyncio.gather(*tasks)
    return latencies, statuses, timeouts, lag * 1000


async def measure(args: argparse.Namespace, server: Server, tokens: list[str]) -> list[RouteResult]:
    client = RawClient("127.0.0.1", server.port)
    await client.open(args.connections)
    rng = random.Random(19)
    postmaster = _postmaster(args.database_url)
    results = []
    try:
        for route in args.routes:
            path = ROUTES[route]
            await run_route(client, path, tokens, args.rate, args.warm_up, args.timeout, rng)
            before, since = cpu_sample(server, postmaster), datetime.now(UTC)
            latencies, statuses, timeouts, lag_ms = await run_route(client, path, tokens, args.rate, args.duration,
                                                                    args.timeout, rng)
            after, until = cpu_sample(server, postmaster), datetime.now(UTC)
            answered = len(latencies)
            cycles = engine_cycles(server.log_dir, since, until)
            elapsed = (until - since).total_seconds()
            per_request = 1000 / max(1, answered)
            results.append(RouteResult(
                route=path, rate=args.rate, duration_s=args.duration, sent=int(args.rate * args.duration),
                answered=answered, achieved_rate=round(answered / elapsed, 1),
                p50_ms=round(_percentile(latencies, 0.5), 1), p90_ms=round(_percentile(latencies, 0.9), 1),
                p99_ms=round(_percentile(latencies, 0.99), 1), max_ms=round(max(latencies, default=float("nan")), 1),
                errors={s: n for s, n in statuses.items() if not s.startswith("2")}, timeouts=timeouts,
                generator_lag_max_ms=round(lag_ms, 1),
                api_cpu_ms_per_request=round((after.api_s - before.api_s) * per_request, 2),
                engine_cpu_s=round(after.engine_s - before.engine_s, 1),
                database_cpu_ms_per_request=round((after.database_s - before.database_s) * per_request, 2),
                engine_cycles=len(cycles), engine_cycle_mean_s=round(statistics.mean(cycles), 1) if cycles else None,
                load_average=os.getloadavg()[0],
                statuses=dict(statuses),
            ))
            print(_line(results[-1]), flush=True)
    finally:
        client.close()
    return results


def _line(r: RouteResult) -> str:
    errors = ", ".join(f"{s}: {n}" for s, n in sorted(r.errors.items())) or "none"
    cycles = f"{r.engine_cycles} cycles" + (f" of {r.engine_cycle_mean_s} s" if r.engine_cycle_mean_s else "")
    return (f"{r.route:26} {r.achieved_rate:6.1f}/s of {r.rate:g}/s  p50 {r.p50_ms:8.1f}  p90 {r.p90_ms:8.1f}  "
            f"p99 {r.p99_ms:8.1f}  max {r.max_ms:8.1f} ms  errors {errors}  timeouts {r.timeouts}  "
            f"CPU/request: API {r.api_cpu_ms_per_request} ms, PostgreSQL {r.database_cpu_ms_per_request} ms  "
            f"engine {r.engine_cpu_s} s CPU, {cycles}  (generator late by up to {r.generator_lag_max_ms} ms; "
            f"load {r.load_average:.1f})")


async def wait_ready(server: Server, timeout_s: float = 120) -> None:
    client = RawClient("127.0.0.1", server.port)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(f"trdbot serve exited with {server.process.returncode}:\n{server.output.read_text()}")
        try:
            if await client.get("/health", "") == 200:
                client.close()
                return
        except (OSError, asyncio.IncompleteReadError):
            pass
        await asyncio.sleep(0.3)
    raise SystemExit("trdbot serve did not become healthy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=None, help="default: a SQLite file in a temporary directory")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--trades", type=int, default=50, help="closed trades per user")
    parser.add_argument("--active", type=int, default=100, help="users trading (the engine's work)")
    parser.add_argument("--orders", type=int, default=150, help="finished orders kept in each paper account")
    parser.add_argument("--rate", type=float, default=200, help="requests per second")
    parser.add_argument("--duration", type=float, default=30, help="seconds per route")
    parser.add_argument("--warm-up", type=float, default=30, help="seconds at RATE before each route, not counted "
                        "(a serving process has its caches warm: 30 s at 200/s asks for each of 1,000 users 6 times)")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections opened at the start, "
                        "taking turns (more are opened while all are busy)")
    parser.add_argument("--timeout", type=float, default=10, help="seconds before a request counts as timed out")
    parser.add_argument("--routes", type=lambda t: t.split(","), default=["trades", "portfolio"],
                        help=f"comma-separated of {', '.join(ROUTES)}")
    parser.add_argument("--workers", type=int, default=2, help="API processes (0: API and engine in one process)")
    parser.add_argument("--replay-speed", type=float, default=30, help="the engine's market seconds per second "
                        "(30: a 5-minute cycle every 10 s)")
    parser.add_argument("--checkout", type=Path, default=REPO, help="the code to serve (default: this checkout)")
    parser.add_argument("--set", action="append", help="an extra setting for the server, NAME=VALUE (repeatable)")
    parser.add_argument("--quiet-log", action="store_true", help="LOG_LEVEL=WARNING (no access log lines)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    args.checkout = args.checkout.resolve()
    with tempfile.TemporaryDirectory(prefix="api-load-") as tmp:
        workdir = Path(tmp)
        args.database_url = args.database_url or f"sqlite+aiosqlite:///{workdir}/load.db"
        seeded_s = seed(args.database_url, args.checkout, args.users, args.trades, args.active, args.orders)
        secret = secrets.token_urlsafe(48)
        tokens = tokens_for(args.users, secret)
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, code from {args.checkout}, "
              f"{make_url(args.database_url).get_backend_name()}, {args.users} users x {args.trades} trades "
              f"({args.active} trading), seeded in {seeded_s:.0f} s; serve "
              f"{'--workers ' + str(args.workers) if args.workers else 'in one process'}", flush=True)
        server = start_server(args, workdir, secret)
        try:
            asyncio.run(wait_ready(server))
            results = asyncio.run(measure(args, server, tokens))
        finally:
            server.stop()
        if args.json:
            args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                             "results": [asdict(r) for r in results],
                                             "timelines": TIMELINES[1::2]}, indent=1))


if __name__ == "__main__":
    main()
